'use client';
import Link from 'next/link';

export default function RouteError({ error, reset }: { error: Error; reset: () => void }) {
  return (
    <main id="main" className="error-page" role="alert">
      <h1>Something went wrong</h1>
      <p>This page hit an error: {error.message}</p>
      <p>
        <button className="primary" onClick={reset}>
          Try again
        </button>{' '}
        <Link href="/">Back to the labs</Link>
      </p>
    </main>
  );
}
