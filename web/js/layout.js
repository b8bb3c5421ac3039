// Automatic placement for graphs that come without positions (API-format files): columns by how far each node
// is from the end of the graph (so a source sits just left of the node it feeds), each column ordered by where
// its nodes' inputs come from, so links mostly run left to right without crossing.

const COLUMN_GAP = 90;
const ROW_GAP = 40;
const WIDGET_HEIGHTS = { textarea: 110, image: 64 };

/** A close guess of a node's drawn height, before it is drawn. */
export function estimateHeight(node, def) {
  if (!def) return 80 + Object.keys(node.links).length * 24;
  const sockets = def.inputs.filter((i) => !i.widget).length;
  const rows = Math.max(sockets, def.outputs.length);
  let height = 30 + 16 + rows * 24;
  for (const input of def.inputs) {
    if (!input.widget) continue;
    height += (WIDGET_HEIGHTS[input.widget] ?? 24) + 4 + (input.hasControl ? 22 : 0);
  }
  return height + (def.outputNode ? 120 : 0);
}

/** For each node, the longest chain of links from it to a node that feeds nothing. */
function distancesToEnd(graph, ids) {
  const consumers = new Map([...ids].map((id) => [id, []]));
  for (const id of ids) {
    for (const [from] of Object.values(graph.get(id).links)) consumers.get(from)?.push(id);
  }
  const distance = new Map();
  const visiting = new Set();
  const visit = (id) => {
    if (distance.has(id)) return distance.get(id);
    if (visiting.has(id)) return 0; // a cycle: the server will refuse it; just keep going
    visiting.add(id);
    const d = Math.max(-1, ...consumers.get(id).map(visit)) + 1;
    visiting.delete(id);
    distance.set(id, d);
    return d;
  };
  for (const id of ids) visit(id);
  return distance;
}

/** Places the nodes `ids` (all by default) below whatever is already placed. */
export function autoLayout(graph, schema, ids = [...graph.nodes.keys()]) {
  const chosen = new Set(ids.map(String));
  const placed = [...graph.nodes.values()].filter((n) => !chosen.has(n.id));
  const top = placed.length ? Math.max(...placed.map((n) => n.pos[1] + 300)) + ROW_GAP : 0;
  const left = placed.length ? Math.min(...placed.map((n) => n.pos[0])) : 0;
  const distance = distancesToEnd(graph, chosen);
  const last = Math.max(0, ...distance.values());
  const columns = [];
  for (const id of chosen) (columns[last - distance.get(id)] ??= []).push(graph.get(id));
  const rowOf = new Map();
  let x = left;
  for (const column of columns) {
    if (!column) continue;
    const barycenter = (node) => {
      const parents = Object.values(node.links).map(([from]) => rowOf.get(from)).filter((r) => r !== undefined);
      return parents.length ? parents.reduce((a, b) => a + b, 0) / parents.length : Number(node.id) || 0;
    };
    column.sort((a, b) => barycenter(a) - barycenter(b));
    let y = top;
    let width = 0;
    for (const node of column) {
      node.pos = [x, y];
      rowOf.set(node.id, y);
      y += estimateHeight(node, schema.get(node.type)) + ROW_GAP;
      width = Math.max(width, node.size[0]);
    }
    x += width + COLUMN_GAP;
  }
}
