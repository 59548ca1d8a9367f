// The 1984-wide sliding replay window of PROTOCOL.md 6.5 (also used for
// fragment message ids, 7.4). A 2048-bit ring bitmap indexed by number mod 2048.

export const REPLAY_WINDOW = 1984;
const BITS = 2048;

export class ReplayWindow {
  private highest = -1;
  private readonly map = new Uint32Array(BITS / 32);

  /** True when `n` may be accepted (not yet committed, not too old). */
  check(n: number): boolean {
    if (n < 0) return false;
    if (this.highest < 0 || n > this.highest) return true;
    if (this.highest - n >= REPLAY_WINDOW) return false;
    const i = n % BITS;
    return (this.map[i >>> 5]! & (1 << (i & 31))) === 0;
  }

  /** Why `n` would be accepted or refused (6.5). */
  status(n: number): 'accepted' | 'duplicate' | 'too_old' {
    if (this.check(n)) return 'accepted';
    return n >= 0 && this.highest >= 0 && this.highest - n < REPLAY_WINDOW ? 'duplicate' : 'too_old';
  }

  /** Records `n` (call only after check() and authentication). */
  commit(n: number): void {
    if (n > this.highest) {
      const from = this.highest + 1;
      if (this.highest < 0 || n - this.highest >= BITS) {
        this.map.fill(0);
      } else {
        for (let k = from; k <= n; k++) {
          const i = k % BITS;
          this.map[i >>> 5]! &= ~(1 << (i & 31));
        }
      }
      this.highest = n;
    }
    const i = n % BITS;
    this.map[i >>> 5]! |= 1 << (i & 31);
  }

  /** Largest committed number, -1 before the first. */
  get max(): number {
    return this.highest;
  }
}
