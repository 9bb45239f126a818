/** A failure shown to the student: what failed, the failed sandbox step if any, and a hint. */

export interface ErrorInfo {
  message: string;
  step?: string;
  hint?: string;
}

export function ErrorBox({ title, error }: { title: string; error: ErrorInfo }) {
  return (
    <div role="alert" className="result fail">
      <strong>{title}</strong>
      {error.message}
      {error.step && <span className="muted"> (failed step: {error.step})</span>}
      {error.hint && <div>Hint: {error.hint}</div>}
    </div>
  );
}
