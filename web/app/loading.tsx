export default function Loading() {
  return (
    <main className="loading-page muted" aria-busy="true">
      Loading…
    </main>
  );
}
