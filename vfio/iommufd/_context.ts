// What the objects of an iommufd context may ask of it without a public
// method: its fd (checked open), and a place in its list of live objects, so
// that the context refuses to close while they live and each object can tell
// which others still use it. Nothing outside vfio/iommufd/ imports this file.

/** A live object of a context: an IOAS, a HWPT, or a bound cdev device. */
export interface ContextChild {
  /** How errors name it, such as `"IOAS 1"` or `"device /dev/vfio/devices/vfio0"`. */
  readonly label: string;
  /** The ids of the context's objects it uses now (a HWPT its IOAS; a device what it is attached to). */
  uses(): readonly number[];
}

/** A context's side of the link. */
export interface ContextLink {
  /** The context's fd; throws `VfioStateError` once it is closed. */
  fd(what: string): number;
  /** An object of the context is live. */
  adopt(child: ContextChild): void;
  /** An object of the context is gone. */
  release(child: ContextChild): void;
  /** The labels of the live objects that use object `id`. */
  usersOf(id: number): string[];
}

const links = new WeakMap<object, ContextLink>();

/**
 * Registers a context's side of the link.
 *
 * @param context The `Iommufd`.
 * @param link Its side.
 */
export function linkContext(context: object, link: ContextLink): void {
  links.set(context, link);
}

/**
 * A context's side of the link.
 *
 * @param context The `Iommufd`.
 * @returns Its side.
 */
export function contextLink(context: object): ContextLink {
  const link = links.get(context);
  if (link === undefined) throw new TypeError("Cannot link to an object that is not an Iommufd");
  return link;
}
