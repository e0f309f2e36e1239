/** Field paths as vmroll prints them: `spec.template.spec.domain.devices.interfaces[name=net1].state`. */

/** One step of a path: an object key, or a list element picked by its `name`. */
export type Segment = string | { readonly name: string };

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_-]*$/;

/** Renders a path; keys that are not plain identifiers are quoted (`labels["kubevirt.io/os"]`). */
export function formatPath(segments: readonly Segment[]): string {
  let out = '';
  for (const seg of segments) {
    if (typeof seg === 'string') {
      if (PLAIN_KEY.test(seg)) out += out === '' ? seg : `.${seg}`;
      else out += `[${JSON.stringify(seg)}]`;
    } else {
      out += `[name=${seg.name}]`;
    }
  }
  return out;
}

/** The path prefix of the VMI template spec inside a VirtualMachine. */
export const TEMPLATE_SPEC: readonly Segment[] = ['spec', 'template', 'spec'];

/** Joins the template-spec prefix with more segments. */
export function templatePath(...rest: Segment[]): string {
  return formatPath([...TEMPLATE_SPEC, ...rest]);
}

/** Reads the value at a path of segments; undefined when any step is missing. */
export function getAt(root: unknown, segments: readonly Segment[]): unknown {
  let cur: unknown = root;
  for (const seg of segments) {
    if (typeof seg === 'string') {
      if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) return undefined;
      cur = (cur as Record<string, unknown>)[seg];
    } else {
      if (!Array.isArray(cur)) return undefined;
      cur = cur.find((item: unknown) => typeof item === 'object' && item !== null && (item as Record<string, unknown>)['name'] === seg.name);
    }
  }
  return cur;
}

/** True when `inner` equals `outer` or lies below it. */
export function isWithin(inner: readonly Segment[], outer: readonly Segment[]): boolean {
  if (inner.length < outer.length) return false;
  return outer.every((seg, i) => {
    const other = inner[i];
    return typeof seg === 'string' ? other === seg : typeof other === 'object' && other.name === seg.name;
  });
}

/** Parses a path printed by {@link formatPath} back into segments. */
export function parsePath(path: string): Segment[] {
  const out: Segment[] = [];
  const re = /([A-Za-z_][A-Za-z0-9_-]*)|\[name=([^\]]*)\]|\[("(?:[^"\\]|\\.)*")\]|\./g;
  for (const m of path.matchAll(re)) {
    if (m[1] !== undefined) out.push(m[1]);
    else if (m[2] !== undefined) out.push({ name: m[2] });
    else if (m[3] !== undefined) out.push(JSON.parse(m[3]) as string);
  }
  return out;
}
