import Link from 'next/link';
import { SiteHeader } from '../components/site-header';

export default function NotFound() {
  return (
    <>
      <SiteHeader />
      <main id="main" className="error-page">
        <h1>Not found</h1>
        <p>There is no lab or page at this address. It may have been renamed or removed.</p>
        <p>
          <Link href="/">See all labs</Link>
        </p>
      </main>
    </>
  );
}
