# Tiny assertion helpers for shell tests. Source it, then:
#
#   check "what is true" command args...   # prints ok:/FAIL:, counts
#   check_summary "suite name"             # prints "<name>: N passed, N failed";
#                                          # returns 1 if anything failed

CHECKS_PASSED=0
CHECKS_FAILED=0

check() {
    local what=$1
    shift
    if "$@"; then
        echo "ok: $what"
        CHECKS_PASSED=$((CHECKS_PASSED + 1))
    else
        echo "FAIL: $what"
        CHECKS_FAILED=$((CHECKS_FAILED + 1))
    fi
}

check_summary() {
    echo "$1: $CHECKS_PASSED passed, $CHECKS_FAILED failed"
    ((CHECKS_FAILED == 0))
}
