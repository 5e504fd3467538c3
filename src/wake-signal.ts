/**
 * A loop's doorbell: `sleep(ms)` waits until `wake()` rings or `ms` passes. A ring while the
 * loop is busy is remembered, so the next sleep returns at once and no wake-up is lost.
 */
export function createWakeSignal() {
  let rung = false;
  let ring: (() => void) | null = null;

  return {
    wake(): void {
      rung = true;
      ring?.();
    },
    /** Forgets a ring that came before the work the loop is about to do. */
    clear(): void {
      rung = false;
    },
    sleep(ms: number): Promise<void> {
      if (rung) {
        rung = false;
        return Promise.resolve();
      }
      return new Promise((resolve) => {
        const timer = setTimeout(() => ring?.(), Math.max(0, ms));
        ring = () => {
          ring = null;
          rung = false;
          clearTimeout(timer);
          resolve();
        };
      });
    },
  };
}
