/**
 * `info`: what the VFIO container reports, the dirty bitmap geometry it
 * implies, and which device dirty sources are available (and why not).
 *
 * @module
 */

import { hex } from "../sys/address.ts";
import { VfioContainer } from "../vfio/container.ts";
import { dirtyBitmapBytes } from "../vfio/dirty_page_tracker.ts";
import type { IommuInfo } from "../vfio/uapi/iommu_info.ts";
import type { Syscalls } from "../sys/syscalls.ts";
import { UsageError } from "./describe_error.ts";
import {
  containerSource,
  deviceLoggingSource,
  type DirtySourceInfo,
  iommufdSource,
} from "./info_dirty_sources.ts";
import { helpText, parseCommand } from "./flags.ts";

/** The flags of `info`. */
export const INFO_COMMAND = {
  name: "info",
  summary:
    "Print what the VFIO container reports: API version, extensions and, with a group, the IOMMU info and the dirty-bitmap geometry it implies; and which device dirty sources are available, and why the others are not.",
  flags: {
    container: {
      type: "string",
      value: "PATH",
      help: "the container device",
      default: "/dev/vfio/vfio",
    },
    group: {
      type: "string",
      value: "N",
      help: "attach this IOMMU group (a number or a /dev/vfio path) to read the IOMMU info",
    },
    device: {
      type: "string",
      value: "NAME",
      help:
        "a device of the group (PCI address or mdev UUID): also ask its driver (migration, DMA logging) and its IOMMU through iommufd",
    },
    json: { type: "boolean", help: "print JSON instead of text" },
  },
} as const;

/** The `--json` shape of `info`. */
export interface InfoJson {
  /** `VFIO_GET_API_VERSION`. */
  apiVersion: number;
  /** Extension name to `VFIO_CHECK_EXTENSION` answer. */
  extensions: Record<string, boolean>;
  /** The IOMMU info, or null without a group (the kernel answers it only once a group is attached). */
  iommu: {
    iovaPgsizes: number[];
    iovaRanges: { start: string; end: string }[];
    dmaAvail: number | null;
    migration: { pgsizes: number[]; maxDirtyBitmapSize: number; maxBytesPerQuery: number } | null;
  } | null;
  /** Per container and device, each device-side dirty source: available, or why not. */
  dirtySources: DirtySourceInfo[];
}

function bits(mask: bigint): number[] {
  const out: number[] = [];
  for (let b = 0n; b < 64n; b++) if (mask & (1n << b)) out.push(Number(1n << b));
  return out;
}

function size(n: number | bigint): string {
  const v = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
  let i = 0;
  let x = v;
  while (x >= 1024 && i < units.length - 1 && x % 1024 === 0) {
    x /= 1024;
    i++;
  }
  return `${x} ${units[i]}`;
}

function toJson(
  apiVersion: number,
  extensions: Record<string, boolean>,
  info?: IommuInfo,
): InfoJson {
  if (info === undefined) return { apiVersion, extensions, iommu: null, dirtySources: [] };
  const mig = info.migration;
  const pg = mig ? mig.pgsizeBitmap & -mig.pgsizeBitmap : 0n;
  return {
    apiVersion,
    extensions,
    iommu: {
      iovaPgsizes: bits(info.iovaPgsizes),
      iovaRanges: info.iovaRanges.map((r) => ({ start: hex(r.start), end: hex(r.end) })),
      dmaAvail: info.dmaAvail ?? null,
      migration: mig
        ? {
          pgsizes: bits(mig.pgsizeBitmap),
          maxDirtyBitmapSize: Number(mig.maxDirtyBitmapSize),
          maxBytesPerQuery: Number(mig.maxDirtyBitmapSize * 8n * pg),
        }
        : null,
    },
    dirtySources: [],
  };
}

function sourcesText(j: InfoJson): string[] {
  const lines = ["Device dirty sources:"];
  for (const s of j.dirtySources) {
    const what = s.available ? `available, ${s.scope}` : "unavailable";
    lines.push(`  ${s.source.padEnd(19)} ${s.for.padEnd(14)} ${what}: ${s.reason}`);
  }
  return lines;
}

function toText(j: InfoJson, group: string | undefined): string {
  const lines = [`VFIO API version ${j.apiVersion}`, "Extensions:"];
  for (const [name, on] of Object.entries(j.extensions)) {
    lines.push(`  ${name.padEnd(20)} ${on ? "yes" : "no"}`);
  }
  if (j.iommu === null) {
    lines.push("IOMMU: attach a group (--group N) to read it; the kernel answers only then");
    lines.push(...sourcesText(j));
    return lines.join("\n");
  }
  const m = j.iommu;
  lines.push(`IOMMU (group ${group}):`);
  lines.push(`  page sizes           ${m.iovaPgsizes.map(size).join(", ")}`);
  lines.push(`  IOVA ranges          ${m.iovaRanges.map((r) => `${r.start}-${r.end}`).join(", ")}`);
  lines.push(`  DMA mappings left    ${m.dmaAvail ?? "not reported"}`);
  if (m.migration === null) {
    lines.push("  migration            no capability: device-side dirty tracking unavailable");
  } else {
    const pg = m.migration.pgsizes[0];
    lines.push(`  dirty page sizes     ${m.migration.pgsizes.map(size).join(", ")}`);
    lines.push(`  max bitmap / query   ${size(m.migration.maxDirtyBitmapSize)}`);
    lines.push(`  bitmap per GiB       ${dirtyBitmapBytes(BigInt(2 ** 30 / pg))} bytes`);
    lines.push(`  most memory / query  ${size(m.migration.maxBytesPerQuery)}`);
  }
  lines.push(...sourcesText(j));
  return lines.join("\n");
}

/**
 * Runs `info`.
 *
 * @param args The arguments after `info`.
 * @param options Where output goes, and the syscall boundary (a fake in tests).
 * @returns The exit status.
 * @throws {UsageError} For bad arguments.
 * @throws {SyscallError} When the container or group cannot be opened.
 *
 * @example
 * ```ts ignore
 * import { runInfo } from "./info.ts";
 * Deno.exit(runInfo(["--group", "26", "--json"]));
 * ```
 */
export function runInfo(
  args: string[],
  options: { syscalls?: Syscalls; write?: (line: string) => void } = {},
): number {
  const write = options.write ?? ((line: string) => console.log(line));
  const parsed = parseCommand(INFO_COMMAND, args);
  if (parsed === "help") {
    write(helpText(INFO_COMMAND));
    return 0;
  }
  const { values } = parsed;
  let group: number | string | undefined;
  if (values.group !== undefined) {
    group = /^\d+$/.test(values.group) ? Number(values.group) : values.group;
    if (typeof group === "string" && !group.startsWith("/")) {
      throw new UsageError(
        `--group takes a group number or a /dev/vfio path, not "${values.group}"`,
      );
    }
  }
  using container = VfioContainer.open({ path: values.container, syscalls: options.syscalls });
  const apiVersion = container.apiVersion();
  const extensions = container.extensions();
  let info: IommuInfo | undefined;
  const sources: DirtySourceInfo[] = [];
  if (values.device !== undefined && group === undefined) {
    throw new UsageError("--device needs the device's group (--group N)");
  }
  if (group !== undefined) {
    using g = container.attachGroup(group);
    info = container.info();
    sources.push(containerSource(container, { for: `group ${values.group}` }));
    if (values.device !== undefined) {
      using device = g.openDevice(values.device);
      sources.push(deviceLoggingSource(device));
    }
  } else {
    sources.push({
      source: "vfio-container",
      for: "-",
      available: false,
      reason: "attach a group (--group N) to probe it",
    });
  }
  // After the group is closed: a device's cdev and its group are exclusive.
  sources.push(iommufdSource(values.device, { syscalls: options.syscalls }));
  const j = { ...toJson(apiVersion, extensions, info), dirtySources: sources };
  write(values.json ? JSON.stringify(j, null, 2) : toText(j, values.group));
  return 0;
}
