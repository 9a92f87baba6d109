/**
 * MQTT topic layout. The edge id is always the third level (`osprey/v1/edges/{edgeId}/...`)
 * so that a broker ACL can say "edge X may only use edges/X/#".
 */
export const TOPIC_ROOT = 'osprey/v1';

export const MessageKinds = ['desired', 'state', 'results', 'ack', 'telemetry', 'events'] as const;
export type MessageKind = (typeof MessageKinds)[number];

/** Edge ids are also topic levels and file names: no wildcards, slashes or spaces. */
export const EDGE_ID_PATTERN = '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$';
const edgeIdRe = new RegExp(EDGE_ID_PATTERN);

export function isValidEdgeId(id: string): boolean {
  return edgeIdRe.test(id);
}

/** The topic of one message kind for one edge. */
export function edgeTopic(edgeId: string, kind: MessageKind): string {
  if (!isValidEdgeId(edgeId)) throw new TypeError(`invalid edge id "${edgeId}"`);
  return `${TOPIC_ROOT}/edges/${edgeId}/${kind}`;
}

/** The subscription filter for one kind from every edge. */
export function allEdgesFilter(kind: MessageKind): string {
  return `${TOPIC_ROOT}/edges/+/${kind}`;
}

/** Splits an Osprey edge topic; returns null for anything else. */
export function parseEdgeTopic(topic: string): { edgeId: string; kind: MessageKind } | null {
  const parts = topic.split('/');
  if (parts.length !== 5 || `${parts[0]}/${parts[1]}` !== TOPIC_ROOT || parts[2] !== 'edges') return null;
  const edgeId = parts[3]!;
  const kind = parts[4] as MessageKind;
  if (!isValidEdgeId(edgeId) || !MessageKinds.includes(kind)) return null;
  return { edgeId, kind };
}
