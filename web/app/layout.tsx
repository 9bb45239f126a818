import type { Metadata } from 'next';
import './globals.css';

export const metadata: Metadata = {
  title: 'Underlay',
  description: 'Learn how containers really work, on a real kernel.',
};

// Applies a remembered theme before the first paint (no flash of the wrong theme).
const THEME_SCRIPT = `try{var t=localStorage.getItem('underlay.theme');if(t)document.documentElement.setAttribute('data-theme',t)}catch(e){}`;

export default function RootLayout({ children }: { children: React.ReactNode }) {
  return (
    <html lang="en" suppressHydrationWarning>
      <head>
        <script dangerouslySetInnerHTML={{ __html: THEME_SCRIPT }} />
      </head>
      <body>
        <a href="#main" className="skip-link">
          Skip to content
        </a>
        {children}
      </body>
    </html>
  );
}
