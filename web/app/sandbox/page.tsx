import { SandboxShell } from '../../components/terminal/sandbox-shell';
import { SiteHeader } from '../../components/site-header';

export default function FreeSandbox() {
  return (
    <div style={{ display: 'flex', flexDirection: 'column', height: '100vh' }}>
      <SiteHeader>
        <span className="tagline">Free sandbox: no lab, no checks.</span>
      </SiteHeader>
      <main id="main" style={{ flex: 1, display: 'flex', flexDirection: 'column', minHeight: 0 }}>
        <SandboxShell />
      </main>
    </div>
  );
}
