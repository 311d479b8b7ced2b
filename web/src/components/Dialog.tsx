// A confirmation (SPEC §11): a modal `dialog` whose confirm button carries the action's name,
// beside `Cancel`. The action's error is shown inside it as the API words it, and the dialog
// stays open; it closes when the action succeeds, or on Cancel or Escape.
import type { ComponentChildren } from 'preact';
import { useEffect, useId, useRef, useState } from 'preact/hooks';
import { ApiError } from '../api.ts';
import { t } from '../i18n.ts';

export interface DialogProps {
  title: string;
  /** The confirm button's text: the action's name. */
  confirm: string;
  onConfirm: () => Promise<void>;
  onClose: () => void;
  children?: ComponentChildren;
  /** The confirm button is disabled (nothing would be done). */
  disabled?: boolean;
  danger?: boolean;
}

export function Dialog({ title, confirm, onConfirm, onClose, children, disabled, danger }: DialogProps) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    const dialog = ref.current!;
    if (!dialog.open) dialog.showModal();
    return () => dialog.open && dialog.close();
  }, []);

  const submit = async (event: Event) => {
    event.preventDefault();
    if (busy) return;
    setBusy(true);
    setError(null);
    try {
      await onConfirm();
      onClose();
    } catch (thrown) {
      setError(thrown instanceof ApiError ? thrown.message : String(thrown));
      setBusy(false);
    }
  };

  return (
    <dialog ref={ref} aria-labelledby={titleId} onCancel={(event) => (event.preventDefault(), onClose())} class="dialog">
      <form method="dialog" onSubmit={(event) => void submit(event)}>
        <h2 id={titleId}>{title}</h2>
        {children}
        {error !== null && (
          <p role="alert" class="error">
            {error}
          </p>
        )}
        <div class="dialog-buttons">
          <button type="button" onClick={onClose}>
            {t.cancel}
          </button>
          <button type="submit" class={danger ? 'danger' : 'primary'} disabled={busy || disabled}>
            {confirm}
          </button>
        </div>
      </form>
    </dialog>
  );
}

/** The pause note: a textbox labelled `Note` (SPEC §11). */
export function NoteField({ value, onInput }: { value: string; onInput: (value: string) => void }) {
  return (
    <label class="field">
      <span>{t.note}</span>
      <textarea rows={3} maxLength={1000} value={value} onInput={(event) => onInput(event.currentTarget.value)} />
    </label>
  );
}
