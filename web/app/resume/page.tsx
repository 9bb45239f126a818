import { SiteHeader } from '../../components/site-header';
import { ResumeHere } from '../../components/resume-here';
import styles from '../join/page.module.css';

export default function Resume() {
  return (
    <>
      <SiteHeader tagline="Continue where you were." />
      <main id="main" className={styles.main}>
        <h1>Continue on this device</h1>
        <ResumeHere />
      </main>
    </>
  );
}
