import { SandboxShell } from '../components/terminal/sandbox-shell';

export default function Home() {
  return (
    <main style={{ display: 'flex', flexDirection: 'column', height: '100vh' }}>
      <header
        style={{
          padding: '0.8rem 1.2rem',
          borderBottom: '1px solid var(--border)',
          display: 'flex',
          alignItems: 'baseline',
          gap: '1rem',
        }}
      >
        <h1 style={{ margin: 0, fontSize: '1.25rem' }}>Underlay</h1>
        <span style={{ color: 'var(--muted)' }}>
          Learn how containers really work, on a real kernel.
        </span>
      </header>
      <SandboxShell />
    </main>
  );
}
