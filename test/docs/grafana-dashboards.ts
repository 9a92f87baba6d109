/**
 * What a Grafana dashboard (deploy/grafana/*.json) asks Prometheus for: every metric name in its
 * panels' PromQL and its template variables' queries, histogram series (`_bucket`, `_sum`,
 * `_count`) named by their family. The metrics test checks each against real scrapes.
 */

/** Metric families the dashboard's expressions and variable queries name. */
export function dashboardMetricNames(dashboard: unknown): Set<string> {
  const exprs: string[] = [];
  const walk = (node: unknown, key?: string) => {
    if (typeof node === 'string') {
      if (key === 'expr' || key === 'query' || key === 'definition') exprs.push(node);
      return;
    }
    if (Array.isArray(node)) for (const v of node) walk(v, key);
    else if (node && typeof node === 'object') for (const [k, v] of Object.entries(node)) walk(v, k);
  };
  walk(dashboard);
  const names = new Set<string>();
  for (const e of exprs) for (const m of e.matchAll(/\bosprey_[a-z0-9_]+/g)) names.add(m[0].replace(/_(bucket|sum|count)$/, ''));
  return names;
}
