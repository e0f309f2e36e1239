/**
 * The logger every command uses: pino, on stderr, secrets redacted, as JSON lines (for log
 * collectors) or as readable text lines (`--log-format text`, Flux's `--log-encoding console`).
 */
import { pino, type Logger } from 'pino';
import { UsageError } from './usage.ts';

/** How log lines are written. */
export const LogFormat = {
  /** One JSON object per line (pino's own). */
  json: 'json',
  /** `TIME LEVEL message key=value …`, one line per event. */
  text: 'text',
} as const;
/** A value of {@link LogFormat}. */
export type LogFormat = (typeof LogFormat)[keyof typeof LogFormat];

/** Reads `--log-format` (default json); anything else is a usage error. */
export function parseLogFormat(text: string | undefined): LogFormat {
  const value = text ?? LogFormat.json;
  if (value !== LogFormat.json && value !== LogFormat.text) throw new UsageError(`--log-format must be json or text, not "${value}"`);
  return value;
}

const LEVEL_NAMES: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };

function textValue(v: unknown): string {
  if (typeof v === 'string') return /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** Renders one pino JSON line as text; a line that is not pino's JSON is passed through as it is. */
export function formatLogLine(line: string): string {
  let event: unknown;
  try {
    event = JSON.parse(line);
  } catch {
    return line.endsWith('\n') ? line : `${line}\n`;
  }
  if (typeof event !== 'object' || event === null || Array.isArray(event)) return line.endsWith('\n') ? line : `${line}\n`;
  const { time, level, msg, ...rest } = event as Record<string, unknown>;
  const when = typeof time === 'number' ? new Date(time).toISOString() : '';
  const name = typeof level === 'number' ? (LEVEL_NAMES[level] ?? String(level)) : String(level ?? '');
  const fields = Object.entries(rest).map(([k, v]) => `${k}=${textValue(v)}`);
  return `${[when, name.padEnd(5), typeof msg === 'string' ? msg : '', ...fields].filter((s) => s !== '').join(' ')}\n`;
}

/** A destination that writes each pino line to `out` rendered as text. */
function textDestination(out: NodeJS.WritableStream): { write(line: string): boolean } {
  return {
    write: (chunk: string) => {
      // pino writes one event per call, each ending in a newline; split in case several arrive at once.
      const text = chunk
        .split('\n')
        .filter((l) => l !== '')
        .map(formatLogLine)
        .join('');
      return out.write(text);
    },
  };
}

/** Builds the pino logger: on stderr (or `destination`), secrets redacted, as JSON lines or text. */
export function makeLogger(level: string, secrets: readonly string[], destination: NodeJS.WritableStream = process.stderr, format: LogFormat = LogFormat.json): Logger {
  // Read at every line, not copied: a caller may add the secrets a configuration reload brings (see secretsOf).
  const hide = secrets;
  return pino(
    {
      level,
      base: null,
      redact: { paths: ['token', 'secret', '*.token', '*.secret', 'headers.authorization'], censor: '[redacted]' },
      hooks: {
        // Secrets are cut out of the JSON line before it is rendered, so neither format shows them.
        streamWrite: (line) => hide.reduce((acc, s) => (s.length > 0 ? acc.split(s).join('[redacted]') : acc), line),
      },
    },
    format === LogFormat.text ? textDestination(destination) : destination,
  );
}
