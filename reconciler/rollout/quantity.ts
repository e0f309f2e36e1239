/**
 * Kubernetes resource quantities (`2Gi`, `1024Mi`, `500m`, `1e3`), parsed exactly into
 * thousandths of a unit as a bigint, so `1Gi` equals `1024Mi` and alignment checks are exact.
 */

const BINARY: Record<string, bigint> = {
  Ki: 1n << 10n,
  Mi: 1n << 20n,
  Gi: 1n << 30n,
  Ti: 1n << 40n,
  Pi: 1n << 50n,
  Ei: 1n << 60n,
};
const DECIMAL: Record<string, number> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };

const QUANTITY_RE = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(?:(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)|[eE]([+-]?\d+))?$/;

function pow10(n: number): bigint {
  return 10n ** BigInt(n);
}

function ceilDiv(a: bigint, b: bigint): bigint {
  const q = a / b;
  return a % b === 0n ? q : a > 0n ? q + 1n : q;
}

/** Parses a quantity into thousandths of a unit (rounded up, as Kubernetes does); null when not a quantity. */
export function parseQuantity(v: unknown): bigint | null {
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return null;
    return parseQuantity(String(v));
  }
  if (typeof v !== 'string') return null;
  const m = QUANTITY_RE.exec(v.trim());
  if (!m) return null;
  const sign = m[1] === '-' ? -1n : 1n;
  const [intPart = '', fracPart = ''] = (m[2] ?? '').split('.');
  const digits = BigInt((intPart || '0') + fracPart);
  const fracDigits = fracPart.length;
  const suffix = m[3];
  let num = digits * 1000n;
  let den = pow10(fracDigits);
  if (suffix !== undefined && suffix in BINARY) {
    num *= BINARY[suffix] ?? 1n;
  } else {
    const exp = m[4] !== undefined ? Number(m[4]) : DECIMAL[suffix ?? ''] ?? 0;
    if (exp >= 0) num *= pow10(exp);
    else den *= pow10(-exp);
  }
  return sign * ceilDiv(num, den);
}

/** Whole units (bytes for memory, cores for CPU), rounding thousandths up. */
export function quantityUnits(v: unknown): bigint | null {
  const milli = parseQuantity(v);
  return milli === null ? null : ceilDiv(milli, 1000n);
}

/** True when both are quantities of equal value. */
export function quantitiesEqual(a: unknown, b: unknown): boolean {
  const qa = parseQuantity(a);
  const qb = parseQuantity(b);
  return qa !== null && qb !== null && qa === qb;
}

/** Formats a byte count the way a person would write it: the largest binary suffix that divides it. */
export function formatBytes(bytes: bigint): string {
  for (const suffix of ['Ei', 'Pi', 'Ti', 'Gi', 'Mi', 'Ki'] as const) {
    const unit = BINARY[suffix] ?? 1n;
    if (bytes !== 0n && bytes % unit === 0n) return `${bytes / unit}${suffix}`;
  }
  return String(bytes);
}

/** Formats thousandths of a CPU: whole cores when exact, else millicores. */
export function formatMilliCpu(milli: bigint): string {
  return milli % 1000n === 0n ? String(milli / 1000n) : `${milli}m`;
}
