/**
 * A confirmation before a lever that changes what runs on the line: says what will happen, and
 * does it only on the explicit button. Escape or Cancel closes it; the API's refusal is shown in it.
 */
import { useEffect, useState } from 'preact/hooks';
import type { ComponentChildren } from 'preact';

export interface ConfirmProps {
  title: string;
  children: ComponentChildren;
  /** The button that does it, e.g. "Roll back line-A". */
  confirmLabel: string;
  /** Red button: the action stops or reverts something. */
  danger?: boolean;
  /** Does it; a rejection's message is shown and the dialog stays open. */
  onConfirm: () => Promise<unknown>;
  onClose: () => void;
}

export function Confirm({ title, children, confirmLabel, danger, onConfirm, onClose }: ConfirmProps) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      if (e.key === 'Escape' && !busy) onClose();
    };
    addEventListener('keydown', onKey);
    return () => removeEventListener('keydown', onKey);
  }, [busy, onClose]);
  const go = () => {
    setBusy(true);
    setError(null);
    onConfirm().then(onClose, (err: Error) => {
      setBusy(false);
      setError(err.message);
    });
  };
  return (
    <div class="modal-backdrop">
      <div class="modal" role="dialog" aria-modal="true" aria-labelledby="confirm-title">
        <h2 id="confirm-title">{title}</h2>
        <div class="modal-body">{children}</div>
        {error && <p class="error">{error}</p>}
        <div class="modal-actions">
          <button type="button" class="secondary" onClick={onClose} disabled={busy}>
            Cancel
          </button>
          <button type="button" class={danger ? 'danger' : ''} onClick={go} disabled={busy}>
            {busy ? 'Working…' : confirmLabel}
          </button>
        </div>
      </div>
    </div>
  );
}
