# SPDX-License-Identifier: GPL-2.0
# portdispatch. `make help` lists the targets; the README says what they do.

KVER	?= 6.1
PREFIX	?= /usr/local
DESTDIR	?=

RELEASE	= $(shell scripts/kernel-info $(KVER) release)
VERSION	:= $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' dkms.conf)
DKMS_SRC = $(DESTDIR)/usr/src/portdispatch-$(VERSION)
# Instruction counts run on both Debian kernels, unless KVER names one.
BENCH_KERNELS = $(if $(filter file,$(origin KVER)),6.1 6.12,$(KVER))

all: module portctl selftests		## the module for KVER (default 6.1), portctl, the test helpers

module:					## build/RELEASE/portdispatch.ko for KVER: 6.1, 6.12, debug (or its version: 7.3 today) or a release
	@scripts/build-module $(KVER)

modules:				## the module for 6.1 and 6.12
	@scripts/build-module 6.1
	@scripts/build-module 6.12

portctl:				## build/portctl
	@$(MAKE) -s -C userspace VERSION=$(VERSION)

selftests:				## build/selftests/: the C tests and their helpers
	@$(MAKE) -s -C selftests

demo:					## show it working, in a guest (sets up what is missing)
	@scripts/demo

check:					## every build, style check and selftest, on every kernel
	@scripts/check

stress:					## the fuzz* and churn* selftests, about ten times longer than in check (PORTDISPATCH_STRESS=1)
	@PORTDISPATCH_STRESS=1 CHECK_TESTS="$$(sed -n 's/^\(fuzz[^[:space:]]*\|churn[^[:space:]]*\).*/\1/p' selftests/TESTS | tr '\n' ' ')" \
		scripts/check

bench: bench-icount			## bench-icount, then wall-clock ratios and the cost of changes in a 6.1 guest (KVER: that kernel only); never fails on speed
	@scripts/bench/run --kernel $(KVER)
	@scripts/bench/changes --kernel $(KVER)

bench-icount:				## instructions per datagram and per connection, in a 6.1 then a 6.12 guest (KVER: that one only)
	@for k in $(BENCH_KERNELS); do scripts/bench/icount --kernel $$k || exit; done

debug-kernel:				## build (once) the KASAN/lockdep kernel the tests also use
	@scripts/debug-kernel --ensure

install: module portctl		## module to /lib/modules/RELEASE/updates (+depmod), portctl, man page, completion under PREFIX; then install-units
	install -D -m 0644 build/$(RELEASE)/portdispatch.ko \
		$(DESTDIR)/lib/modules/$(RELEASE)/updates/portdispatch.ko
	$(if $(DESTDIR),,depmod -a $(RELEASE))
	@$(MAKE) -s -C userspace install VERSION=$(VERSION) \
		DESTDIR=$(DESTDIR) PREFIX=$(PREFIX)
	@$(MAKE) -s install-units

install-units:				## portdispatch.service and the example unit under PREFIX/lib/systemd/system, its server, /etc/portdispatch/rules if absent
	@$(MAKE) -s -C systemd install DESTDIR=$(DESTDIR) PREFIX=$(PREFIX)

dkms-install:				## hand the sources to DKMS, which builds the module for every installed kernel
	rm -rf $(DKMS_SRC)
	install -d $(DKMS_SRC)
	cp -r Kbuild dkms.conf module uapi $(DKMS_SRC)/
	dkms add -m portdispatch -v $(VERSION)
	for k in $$(ls /lib/modules); do \
		[ -e /lib/modules/$$k/build ] || continue; \
		dkms install -m portdispatch -v $(VERSION) -k $$k || exit; \
	done

dkms-uninstall:				## remove it from DKMS again
	dkms remove -m portdispatch -v $(VERSION) --all
	rm -rf $(DKMS_SRC)

clean:					## remove build/ (the caches outside the tree stay)
	rm -rf build

help:					## this list
	@sed -n 's/^\([a-z-]*\):.*## \(.*\)/\1\t\2/p' $(MAKEFILE_LIST) | expand -t 16

.PHONY: all module modules portctl selftests demo check stress bench bench-icount debug-kernel install install-units dkms-install dkms-uninstall clean help
