// The host-conformance group: tests of what the host kernel itself does
// (its build options, sysctls, privileges, the ioctls of its version). Each
// names what it needs; the needs are checked when its module loads, from
// sources independent of the code under test (the kernel release, its
// config, /proc, the file system). A test whose needs are missing is
// registered ignored, and one line says why, which tests/all.ts counts and
// prints:
//
//   host-conformance skipped: <test name>: needs <need> (<what was found>)
//
// Behaviour that does not depend on the host runs against FakeKernel instead.

import { gunzipSync } from "node:zlib";

/** Something a host-conformance test needs. */
export interface HostNeed {
  /** What it is, such as "Linux 6.7 or later". */
  readonly what: string;
  /** Why it is missing, or undefined when the host has it. */
  readonly missing: () => string | undefined;
}

/** The prefix of every host-conformance test name. */
export const HOST_CONFORMANCE = "host-conformance: ";
/** The prefix of the line that reports a skip. */
export const SKIP_LINE = "host-conformance skipped: ";

function once(check: () => string | undefined): () => string | undefined {
  let done = false;
  let answer: string | undefined;
  return () => {
    if (!done) {
      answer = check();
      done = true;
    }
    return answer;
  };
}

function release(): [number, number] {
  const m = /^(\d+)\.(\d+)/.exec(Deno.osRelease());
  return m ? [Number(m[1]), Number(m[2])] : [0, 0];
}

/**
 * The host runs Linux `major.minor` or later.
 *
 * @param major The major version.
 * @param minor The minor version.
 * @param why What that version brings.
 * @returns The need.
 */
export function linuxAtLeast(major: number, minor: number, why: string): HostNeed {
  return {
    what: `Linux ${major}.${minor} or later (${why})`,
    missing: once(() => {
      const [a, b] = release();
      return a > major || (a === major && b >= minor) ? undefined : `this is ${Deno.osRelease()}`;
    }),
  };
}

let config: Map<string, string> | string | undefined;

function kernelConfig(): Map<string, string> | string {
  if (config !== undefined) return config;
  const sources = ["/proc/config.gz", `/boot/config-${Deno.osRelease()}`];
  for (const path of sources) {
    try {
      const raw = Deno.readFileSync(path);
      const text = new TextDecoder().decode(path.endsWith(".gz") ? gunzipSync(raw) : raw);
      const map = new Map<string, string>();
      for (const line of text.split("\n")) {
        const m = /^(CONFIG_\w+)=(.*)$/.exec(line);
        if (m) map.set(m[1], m[2]);
      }
      return config = map;
    } catch {
      // try the next source
    }
  }
  return config = `neither ${sources.join(" nor ")} can be read`;
}

/**
 * The kernel's build configuration can be read (`/proc/config.gz` or
 * `/boot/config-<release>`).
 *
 * @returns The need.
 */
export function kernelConfigReadable(): HostNeed {
  return {
    what: "the kernel's build configuration (/proc/config.gz or /boot/config-<release>)",
    missing: () => {
      const c = kernelConfig();
      return typeof c === "string" ? c : undefined;
    },
  };
}

/**
 * Whether the running kernel was built with an option (`=y`).
 *
 * @param option Such as `"CONFIG_MEM_SOFT_DIRTY"`.
 * @returns `true`, `false`, or undefined when the config cannot be read.
 */
export function kernelHas(option: string): boolean | undefined {
  const c = kernelConfig();
  return typeof c === "string" ? undefined : c.get(option) === "y";
}

/**
 * The kernel was built with an option.
 *
 * @param option Such as `"CONFIG_USERFAULTFD"`.
 * @returns The need.
 */
export function kernelBuiltWith(option: string): HostNeed {
  return {
    what: `a kernel built with ${option}`,
    missing: () => {
      const has = kernelHas(option);
      return has === undefined
        ? kernelConfigReadable().missing()
        : has
        ? undefined
        : `${option} is not set`;
    },
  };
}

/** The process runs as root. */
export const ROOT: HostNeed = {
  what: "root",
  missing: () => (Deno.uid() === 0 ? undefined : `this process runs as uid ${Deno.uid()}`),
};

/**
 * An executable on `PATH`.
 *
 * @param name The program.
 * @returns The need.
 */
export function program(name: string): HostNeed {
  return {
    what: `${name} on PATH`,
    missing: once(() => {
      for (const dir of (Deno.env.get("PATH") ?? "").split(":")) {
        try {
          if (Deno.statSync(`${dir}/${name}`).isFile) return undefined;
        } catch {
          // not here
        }
      }
      return "not found";
    }),
  };
}

/**
 * A sysctl has a value.
 *
 * @param path Its `/proc/sys` file.
 * @param value The value it must have.
 * @returns The need.
 */
export function sysctlIs(path: string, value: string): HostNeed {
  const name = path.replace("/proc/sys/", "").replaceAll("/", ".");
  return {
    what: `${name} = ${value}`,
    missing: () => {
      try {
        const found = Deno.readTextFileSync(path).trim();
        return found === value ? undefined : `it is ${found}`;
      } catch (e) {
        return `${path} cannot be read (${e})`;
      }
    },
  };
}

/**
 * A file can be opened for writing (checked without writing).
 *
 * @param path The file.
 * @returns The need.
 */
export function writable(path: string): HostNeed {
  return {
    what: `${path} writable`,
    missing: () => {
      try {
        Deno.openSync(path, { write: true }).close();
        return undefined;
      } catch (e) {
        return String(e);
      }
    },
  };
}

/** userfaultfd(2) is built in: its sysctl exists exactly when `CONFIG_USERFAULTFD` is set. */
export const USERFAULTFD_BUILT_IN: HostNeed = {
  what: "a kernel with userfaultfd (CONFIG_USERFAULTFD)",
  missing: () => {
    try {
      Deno.statSync("/proc/sys/vm/unprivileged_userfaultfd");
      return undefined;
    } catch {
      return "/proc/sys/vm/unprivileged_userfaultfd does not exist";
    }
  },
};

/** Userfaultfd async write-protect and `PAGEMAP_SCAN`: what the pagemap-scan tracker needs. */
export const PAGEMAP_SCAN_HOST: readonly HostNeed[] = [
  linuxAtLeast(6, 7, "PAGEMAP_SCAN, UFFD_FEATURE_WP_ASYNC"),
  USERFAULTFD_BUILT_IN,
];

/**
 * Registers a host-conformance test: named `host-conformance: <name>`, run
 * when every need is met, otherwise ignored with its reason printed.
 *
 * @param name The test name after the prefix (`symbol() behaviour`).
 * @param needs What the host must have.
 * @param fn The test.
 */
export function hostConformanceTest(
  name: string,
  needs: readonly HostNeed[],
  fn: () => void | Promise<void>,
): void {
  const missing = needs.flatMap((n) => {
    const why = n.missing();
    return why === undefined ? [] : [`needs ${n.what} (${why})`];
  });
  const full = HOST_CONFORMANCE + name;
  if (missing.length > 0) console.log(`${SKIP_LINE}${full}: ${missing.join("; ")}`);
  Deno.test({ name: full, ignore: missing.length > 0, fn });
}
