/**
 * The exit protocol of the model children the fleet runs bounded (check-model-child,
 * smoke-test-child, occlusion-child): exit 0 when `main` resolves; otherwise one line
 * `CODE message` on stderr (the Osprey code, or OSP_ERR_MODEL_LOAD) and exit 2, which the parent
 * turns into its one-line refusal.
 */
import { isOspreyError } from '../protocol/errors.js';

export function runChild(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      const text = err instanceof Error ? err.message : String(err);
      const code = isOspreyError(err) ? err.code : 'OSP_ERR_MODEL_LOAD';
      process.stderr.write(`${code} ${text.split('\n')[0]!.trim()}\n`);
      process.exit(2);
    },
  );
}
