/**
 * An alarm that does not flap (issue 13: a storage alarm once sent 341 events in 40 s). It is
 * raised at once when the level passes its high mark, and cleared only when the level is past
 * its low mark AND the high mark has not been seen for `holdMs`. So a level hovering around one
 * threshold raises once, and clears once when it has really gone: at most one raise and one clear
 * per `holdMs`, whatever the frame rate.
 */
export interface HysteresisAlarm {
  readonly raised: boolean;
  /**
   * One reading. `high`: the level is past the raise mark now. `low`: it is past the clear mark
   * (a separate, safer mark; pass `!high` where there is only one). Returns true when the alarm
   * changed.
   */
  update(high: boolean, low: boolean): boolean;
}

export interface HysteresisAlarmOptions {
  /** How long the raise condition must stay away before the alarm may clear (ms). */
  holdMs: number;
  /** Called on each change; must not throw. */
  onChange: (raised: boolean) => void;
  now?: () => number;
}

export function createHysteresisAlarm(opts: HysteresisAlarmOptions): HysteresisAlarm {
  const now = opts.now ?? (() => performance.now());
  let raised = false;
  let lastHigh = 0;
  return {
    get raised() {
      return raised;
    },
    update(high, low) {
      const t = now();
      if (high) {
        lastHigh = t;
        if (raised) return false;
        raised = true;
        opts.onChange(true);
        return true;
      }
      if (!raised || !low || t - lastHigh < opts.holdMs) return false;
      raised = false;
      opts.onChange(false);
      return true;
    },
  };
}
