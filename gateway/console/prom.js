// The Prometheus text format, read in the page: samples, sums by a label, and quantiles
// from histogram buckets (as PromQL's histogram_quantile computes them).

// "name{a="x",b="y"} 12.5 [timestamp]" lines -> [{name, labels, value}]; comments skipped.
export function parse(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const brace = line.indexOf("{");
    const space = line.indexOf(" ");
    let name;
    let labels = {};
    let rest;
    if (brace !== -1 && (space === -1 || brace < space)) {
      name = line.slice(0, brace);
      const [parsed, end] = parseLabels(line, brace + 1);
      labels = parsed;
      rest = line.slice(end + 1);
    } else {
      name = line.slice(0, space);
      rest = line.slice(space);
    }
    const value = parseValue(rest.trim().split(/\s+/)[0]);
    if (!Number.isNaN(value)) samples.push({ name, labels, value });
  }
  return samples;
}

function parseValue(text) {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text);
}

// Reads label pairs from just after "{"; returns [labels, index of the closing "}"].
function parseLabels(line, start) {
  const labels = {};
  let i = start;
  while (i < line.length && line[i] !== "}") {
    const eq = line.indexOf("=", i);
    const key = line.slice(i, eq).trim().replace(/^,/, "").trim();
    i = eq + 2;  // past ="
    let value = "";
    while (i < line.length && line[i] !== '"') {
      if (line[i] === "\\") {
        const next = line[i + 1];
        value += next === "n" ? "\n" : next;
        i += 2;
      } else {
        value += line[i];
        i += 1;
      }
    }
    labels[key] = value;
    i += 1;  // past the closing quote
    if (line[i] === ",") i += 1;
  }
  return [labels, i];
}

// Sum of `name` samples grouped by the value of label `by` (samples passing `keep`).
export function sumBy(samples, name, by, keep = () => true) {
  const sums = new Map();
  for (const s of samples) {
    if (s.name !== name || !keep(s.labels)) continue;
    const key = s.labels[by];
    sums.set(key, (sums.get(key) ?? 0) + s.value);
  }
  return sums;
}

// Histogram buckets of `name` grouped by label `by`: Map(group -> Map(le -> count)).
export function bucketsBy(samples, name, by) {
  const groups = new Map();
  for (const s of samples) {
    if (s.name !== `${name}_bucket`) continue;
    const group = groups.get(s.labels[by]) ?? new Map();
    const le = parseValue(s.labels.le);
    group.set(le, (group.get(le) ?? 0) + s.value);
    groups.set(s.labels[by], group);
  }
  return groups;
}

// a - b, key by key; a key whose count went down (a restarted gateway) keeps a's value.
export function minus(a, b) {
  const out = new Map();
  for (const [key, value] of a) {
    const before = b?.get(key) ?? 0;
    out.set(key, value >= before ? value - before : value);
  }
  return out;
}

// The q-quantile of cumulative buckets (Map le -> count), interpolating linearly inside
// the bucket it falls in; null when the buckets hold nothing. A quantile in the +Inf
// bucket is reported as the highest finite bound, as histogram_quantile does.
export function quantile(q, buckets) {
  const bounds = [...buckets.keys()].sort((x, y) => x - y);
  const total = buckets.get(Infinity) ?? 0;
  if (!bounds.length || total <= 0) return null;
  const rank = q * total;
  let lower = 0;
  let below = 0;
  for (const le of bounds) {
    const count = buckets.get(le);
    if (count >= rank) {
      if (le === Infinity) return bounds.length > 1 ? bounds[bounds.length - 2] : null;
      const inBucket = count - below;
      return inBucket > 0 ? lower + (le - lower) * ((rank - below) / inBucket) : le;
    }
    lower = le;
    below = count;
  }
  return null;
}
