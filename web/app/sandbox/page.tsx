import { SandboxShell } from '../../components/terminal/sandbox-shell';
import { SiteHeader } from '../../components/site-header';
import styles from './page.module.css';

export default function FreeSandbox() {
  return (
    <div className={styles.page}>
      <SiteHeader tagline="Free sandbox: no lab, no checks." />
      <main id="main" className={styles.main}>
        <SandboxShell />
      </main>
    </div>
  );
}
