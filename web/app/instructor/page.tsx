import { Suspense } from 'react';
import { Roster } from '../../components/roster';
import { SiteHeader } from '../../components/site-header';
import styles from './page.module.css';

export default function Instructor() {
  return (
    <>
      <SiteHeader tagline="Instructor: your class, live." />
      <main id="main" className={styles.main}>
        {/* The cohort comes from the query, the token from the link's #fragment (never sent in a URL to the server). */}
        <Suspense>
          <Roster />
        </Suspense>
      </main>
    </>
  );
}
