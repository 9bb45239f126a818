import Link from 'next/link';
import { Catalog } from '../components/catalog';
import { SiteHeader } from '../components/site-header';

export default function Home() {
  return (
    <>
      <SiteHeader>
        <span className="tagline">Learn how containers really work, on a real kernel.</span>
      </SiteHeader>
      <main id="main" className="catalog">
        <h1>Labs</h1>
        <p className="lead">
          Each lab gives you a fresh Linux sandbox on this server&apos;s kernel, where you are root
          in a user namespace. Read a step, type into the real terminal, and press{' '}
          <strong>Check</strong>: the server looks at the kernel&apos;s own state to see whether you
          did it. Prefer a blank machine? Open a <Link href="/sandbox">free sandbox</Link>.
        </p>
        <Catalog />
      </main>
    </>
  );
}
