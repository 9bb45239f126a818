import type { Metadata } from 'next';
import './globals.css';

export const metadata: Metadata = {
  title: 'Underlay',
  description: 'Learn how containers really work, on a real kernel.',
};

export default function RootLayout({ children }: { children: React.ReactNode }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}
