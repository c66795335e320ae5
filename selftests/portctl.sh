#!/bin/bash
# SPDX-License-Identifier: GPL-2.0
# portctl's own tests against the module (userspace/tests/kernel.sh): its
# output, JSON, metrics, errors and batches, in a namespace of their own.
. "$(dirname "$0")/lib.sh"
exec "$TOP/userspace/tests/kernel.sh" "$PORTCTL"
