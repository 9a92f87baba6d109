/**
 * One CSV cell as every CSV the fleet produces writes it. Text that a spreadsheet would read as a
 * formula (leading `=`, `+`, `-`, `@`, tab or carriage return: OWASP "CSV injection") gets a
 * leading `'`, so an edge-supplied label or line name such as `=HYPERLINK(...)` is shown, never
 * run. Numbers the fleet computes are written as numbers by the caller (a negative number stays a
 * number); only text goes through here.
 */

const FORMULA_START = /^[=+\-@\t\r]/;

/** A text cell: neutralised as above, then quoted per RFC 4180 when it holds `,`, `"` or a line break. */
export function csvText(value: string): string {
  const safe = FORMULA_START.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}
