#!/bin/busybox sh
# /init of the deno-vmm kernel-test guest; tests/kernel/harness/initramfs.ts
# packs it with static busybox and the modules listed in /etc/modules.
#
# Makes the host's root, shared read-only over 9p, writable through an overlay
# on tmpfs; binds QEMU's edu device (1234:11e8) to vfio-pci (unless the boot
# has deno_vmm_edu=0: no vIOMMU, no edu); loads the test modules the host left
# in the "work" share (modules.list); runs the job script from that share,
# chrooted into that root, with the edu device's IOMMU group as $1 (empty
# without edu); prints the exit-status marker the host waits for, and powers
# off. Every path ends in the marker and poweroff.

export PATH=/bin
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
echo
mount -t proc proc /proc
mount -t sysfs sysfs /sys

NONCE=none
WATCHDOG=600
EDU=1
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    deno_vmm_nonce=*) NONCE="${arg#*=}" ;;
    deno_vmm_watchdog=*) WATCHDOG="${arg#*=}" ;;
    deno_vmm_edu=*) EDU="${arg#*=}" ;;
  esac
done

JOB=/newroot/run/deno-vmm-job

say() { echo "deno-vmm guest: $*"; }

finish() {
  [ -d "$JOB" ] && echo "$1" >"$JOB/status"
  sync
  echo "DENO_VMM_GUEST_EXIT $NONCE $1"
  poweroff -f
  sleep 10
  exit "$1"
}

fail() {
  say "error: $*"
  finish 125
}

# If the host that started us is gone, nobody stops the VM: stop it ourselves.
(sleep "$WATCHDOG" && say "watchdog: still running after $WATCHDOG s" && finish 124) &

while read -r module; do
  [ -n "$module" ] || continue
  insmod "/lib/modules/$module" || fail "cannot load $module"
done </etc/modules

# KVM: the vendor module of the CPU's virtualization (QEMU's -cpu max has svm),
# with its dependencies. Without it the KVM tests fail on the missing /dev/kvm.
kvm=
grep -qw svm /proc/cpuinfo && kvm=kvm_amd
grep -qw vmx /proc/cpuinfo && kvm=kvm_intel
if [ -n "$kvm" ] && [ -f "/etc/modules.$kvm" ]; then
  while read -r module; do
    [ -n "$module" ] || continue
    insmod "/lib/modules/$module" || say "cannot load $module"
  done <"/etc/modules.$kvm"
fi
if [ -c /dev/kvm ]; then
  say "KVM: /dev/kvm ($kvm)"
else
  say "KVM: no /dev/kvm (CPU virtualization: ${kvm:-none})"
fi

group=
bdf=
bind_edu() {
  dev=
  for d in /sys/bus/pci/devices/*; do
    if [ "$(cat "$d/vendor")" = 0x1234 ] && [ "$(cat "$d/device")" = 0x11e8 ]; then
      dev="$d"
      break
    fi
  done
  [ -n "$dev" ] || fail "no edu device (1234:11e8) on the PCI bus"
  bdf="${dev##*/}"
  echo vfio-pci >"$dev/driver_override" || fail "cannot set driver_override of $bdf"
  echo "$bdf" >/sys/bus/pci/drivers_probe || fail "cannot probe $bdf"
  driver="$(readlink "$dev/driver")"
  [ "${driver##*/}" = vfio-pci ] || fail "$bdf is bound to '${driver##*/}', not vfio-pci"
  group="$(readlink "$dev/iommu_group")"
  group="${group##*/}"
  [ -n "$group" ] || fail "$bdf has no IOMMU group"
  tries=0
  while [ ! -c "/dev/vfio/$group" ]; do
    tries=$((tries + 1))
    [ "$tries" -le 50 ] || fail "/dev/vfio/$group did not appear"
    sleep 0.1
  done
}
[ "$EDU" = 0 ] || bind_edu

# Loopback, for tests that connect two processes over TCP on 127.0.0.1.
ip link set lo up || say "cannot bring up lo"

P9="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o "$P9,ro,cache=loose" hostroot /lower || fail "cannot mount the host root"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "cannot mount tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot ||
  fail "cannot mount the overlay root"
mount -t proc proc /newroot/proc || fail "cannot mount /proc"
mount -t sysfs sysfs /newroot/sys || fail "cannot mount /sys"
mount -t devtmpfs devtmpfs /newroot/dev || fail "cannot mount /dev"
mkdir -p /newroot/dev/shm /newroot/dev/pts "$JOB"
mount -t tmpfs -o mode=1777 tmpfs /newroot/dev/shm
mount -t devpts devpts /newroot/dev/pts
mount -t 9p -o "$P9" work "$JOB" || fail "cannot mount the work share"
[ -f "$JOB/job.sh" ] || fail "no job.sh in the work share"

if [ -f "$JOB/modules.list" ]; then
  while read -r module; do
    [ -n "$module" ] || continue
    insmod "$JOB/$module" || fail "cannot load the test module $module"
  done <"$JOB/modules.list"
fi

if [ -n "$group" ]; then
  say "IOMMU group $group holds edu $bdf (vfio-pci); starting the job"
else
  say "no edu device in this boot; starting the job"
fi
# deno writes to a pipe, not the console tty: plain text, no progress bars.
set -o pipefail
env -i TERM=dumb /bin/chroot /newroot /bin/sh /run/deno-vmm-job/job.sh "$group" 2>&1 | cat
finish $?
