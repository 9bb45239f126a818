import Link from 'next/link';
import { Catalog } from '../components/catalog';
import { SiteHeader } from '../components/site-header';
import styles from './page.module.css';

export default function Home() {
  return (
    <>
      <SiteHeader tagline="Learn how containers really work, on a real kernel." />
      <main id="main" className={styles.catalog}>
        <h1>Labs</h1>
        <p className={styles.lead}>
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
