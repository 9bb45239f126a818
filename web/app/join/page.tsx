import { Suspense } from 'react';
import { SiteHeader } from '../../components/site-header';
import { JoinForm } from '../../components/join-form';
import styles from './page.module.css';

export default function Join() {
  return (
    <>
      <SiteHeader tagline="Join your class." />
      <main id="main" className={styles.main}>
        <h1>Join a class</h1>
        <p>
          Your instructor gave you a code of 8 letters and digits. With it, your progress on the
          class&apos;s labs shows on their dashboard under the name you give here (no password, no
          e-mail).
        </p>
        {/* The code comes from the link's query, read in the browser. */}
        <Suspense>
          <JoinForm />
        </Suspense>
      </main>
    </>
  );
}
