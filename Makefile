# lunboot — see README.md. Every target installs what it needs first.
SHELL := /bin/bash
GO    ?= go
OUT   ?= out
# Machine-wide: slow builds (Debian disks, the LinuxBoot kernel) are cached by
# their inputs and shared by every checkout on the machine.
CACHE ?= /var/cache/lunboot
export LUNBOOT_OUT   := $(abspath $(OUT))
export LUNBOOT_CACHE := $(abspath $(CACHE))

# Debian's GOAMD64 baseline: the image must run on any x86-64 (and under TCG).
IMAGE_ENV := GOAMD64=v1 CGO_ENABLED=0

.PHONY: all deps build image efi linuxboot fixtures distro test test-full unit demo bench fuzz vet clean

all: build

## deps: Debian packages and the Debian kernel (idempotent).
deps:
	@scripts/deps.sh $(CACHE)

## build: the lunboot host binary in out/, stamped with the checkout's
## version and commit (`lunboot version`; internal/version).
build:
	@mkdir -p $(OUT)
	$(GO) build -ldflags "$$($(GO) run ./internal/version/ldflags)" -o $(OUT)/lunboot ./cmds/lunboot

## image: out/lunboot.cpio.xz and out/vmlinuz, the boot image.
image: deps
	$(IMAGE_ENV) $(GO) run ./initramfs/mkimage -out $(OUT) -kernel $(CACHE)/kernel/current

## efi: out/lunboot.efi, one EFI executable (a Unified Kernel Image): the
## kernel, lunboot's image and a default command line, for an ESP, a USB
## stick or UEFI HTTP boot.
efi: image
	$(GO) run ./initramfs/mkefi -out $(OUT)

## linuxboot: out/linuxboot.bzImage, a kernel with the drivers built in and
## lunboot's image inside, the payload for LinuxBoot or coreboot. Built
## from Debian's linux-source-6.1; cached by its inputs in $(CACHE)/linuxboot
## (cold: a kernel compile, once per machine and fragment; after that each
## new image relinks the cached tree, and the same image only copies).
linuxboot: image
	$(GO) run ./initramfs/mklinuxboot -out $(OUT) -cache $(CACHE)

## fixtures: the lab's disk images in out/fixtures (cached by content).
fixtures: deps
	$(GO) run ./qemu/cmd/mkfixtures -out $(OUT)/fixtures

## distro: the real Debian 12 disks for the hand-off tests (cached; a cold
## build runs debootstrap against the machine's apt mirror, ~9 minutes).
distro: deps
	$(GO) run ./qemu/cmd/mkdistro

## test: every suite — unit, fuzz seeds, tgtd interop, QEMU end to end.
## Builds the three deliverables the suites boot (image, efi, linuxboot).
test: deps image efi linuxboot fixtures distro
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 85m ./...

## test-full: make test plus the slow end-to-end variants (testenv.Full):
## each capability keeps one case in make test, its other variants run here.
test-full: deps image efi linuxboot fixtures distro
	$(GO) vet ./...
	LUNBOOT_FULL=1 $(GO) test -count=1 -timeout 150m ./...

## unit: the quick tests only (no root, no tgtd, no QEMU).
unit:
	$(GO) test -count=1 -short ./...

## demo: boot a disk over iSCSI in QEMU and show it working.
demo: deps image fixtures distro
	$(GO) run ./qemu/cmd/demo -out $(OUT)

## bench: lunboot vs libiscsi (iscsi-perf reads, scripts/writeperf writes) against tgtd, the
## boot storm (scripts/stormbench), the boot timeline (QEMU demo, lunboot vs iPXE, the
## Debian disk with Debian's kernel and with the LinuxBoot kernel) and the footprint;
## writes docs/benchmarks.md.
bench: deps build image fixtures distro linuxboot
	scripts/bench.sh $(OUT)/lunboot docs/benchmarks.md

## fuzz: run every fuzz target for FUZZTIME each (default 20s).
FUZZTIME ?= 20s
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }

clean:
	rm -rf $(OUT)
