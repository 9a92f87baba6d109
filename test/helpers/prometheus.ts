/**
 * Scraping a real `/metrics` over HTTP and reading it with a Prometheus text-format parser
 * (parse-prometheus-text-format), for the metrics tests and the dashboard check.
 */
import assert from 'node:assert/strict';
import parsePrometheusTextFormat, { type PrometheusFamily, type PrometheusSample } from 'parse-prometheus-text-format';

export interface Scrape {
  families: Map<string, PrometheusFamily>;
  /** Sum of the samples of `name` whose labels include `labels` (0 when none). */
  value(name: string, labels?: Record<string, string>): number;
  /** The histogram `name` (one series; labels as in value()): count, sum and cumulative buckets. */
  histogram(name: string, labels?: Record<string, string>): { count: number; sum: number; buckets: Map<number, number> };
}

const matches = (have: Record<string, string> | undefined, want: Record<string, string>) => Object.entries(want).every(([k, v]) => have?.[k] === v);

/** GET `url` with `headers`, asserting a 200 in the text format, and parses it. */
export async function scrape(url: string, headers: Record<string, string> = {}): Promise<Scrape> {
  const res = await fetch(url, { headers });
  const text = await res.text();
  assert.equal(res.status, 200, `GET ${url}: ${res.status} ${text.slice(0, 200)}`);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
  return parseScrape(text);
}

/** Parses exposition text. */
export function parseScrape(text: string): Scrape {
  const families = new Map(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
  // The parser folds a histogram's series into one and drops their labels (and count and sum)
  // when the histogram has labels; read as untyped, each _bucket/_sum/_count sample keeps them.
  // Each label set's _bucket, _sum and _count lines come together, so a name recurs: merged here.
  const untyped = new Map<string, PrometheusSample[]>();
  for (const f of parsePrometheusTextFormat(text.replace(/^# TYPE (\S+) histogram$/gm, '# TYPE $1 untyped'))) untyped.set(f.name, [...(untyped.get(f.name) ?? []), ...f.metrics]);
  const series = (name: string, labels: Record<string, string>) => (untyped.get(name) ?? []).filter((m) => matches(m.labels, labels));
  const samples = (name: string, labels: Record<string, string>) => {
    const f = families.get(name);
    assert.ok(f, `no metric ${name} in the scrape`);
    return f.metrics.filter((m) => matches(m.labels, labels));
  };
  return {
    families,
    value: (name, labels = {}) => samples(name, labels).reduce((n, m) => n + Number(m.value), 0),
    histogram(name, labels = {}) {
      assert.equal(families.get(name)?.type, 'HISTOGRAM', `${name} is a histogram in the scrape`);
      const counts = series(`${name}_count`, labels);
      const sums = series(`${name}_sum`, labels);
      assert.equal(counts.length, 1, `${name} ${JSON.stringify(labels)}: ${counts.length} series`);
      return {
        count: Number(counts[0]!.value),
        sum: Number(sums[0]!.value),
        buckets: new Map(series(`${name}_bucket`, labels).map((m) => [m.labels!.le === '+Inf' ? Number.POSITIVE_INFINITY : Number(m.labels!.le), Number(m.value)])),
      };
    },
  };
}
