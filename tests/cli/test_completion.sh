#!/bin/bash
# The bash completion (tools/completion/warmcal.bash) as bash calls it:
# COMP_WORDS/COMP_CWORD set, the function registered for warmcal called.
# Its subcommands and options must be those the programs' --help print
# today, a TRACE/TABLE/-o completes file names, a DIR folder names, and
# completing never runs anything but --help (a `profile -- CMD` must not run).
# Usage: test_completion.sh COMPLETION WARMCAL SYNTH WORKDIR
set -u
completion=$1 warmcal=$2 synth=$3 workdir=$4
mkdir -p "$workdir"
tmp=$(mktemp -d "$workdir/completion-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
touch trace-a.h5 trace-b.h5 table.json
mkdir out-dir

# shellcheck source=/dev/null
. "$completion" || { echo "FAIL: sourcing $completion"; exit 1; }
failed=0
fail() { echo "FAIL: $*"; failed=1; }

# complete WORD... : COMPREPLY for the last word, sorted, one line
complete_words() {
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="$*"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    local fn
    fn=$(complete -p warmcal | sed -n 's/.*-F \([^ ]*\) .*/\1/p')
    "$fn" "$1" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' ' | sed 's/ $//'
}

expect() { # expect WHAT GOT WANT
    [[ $2 == "$3" ]] || fail "$1: got '$2', expected '$3'"
}
has() { # has WHAT GOT WORD...
    local what=$1 got=" $2 " w
    shift 2
    for w; do [[ $got == *" $w "* ]] || fail "$what: '$w' missing from '${got# }'"; done
}
lacks() { # lacks WHAT GOT WORD...
    local what=$1 got=" $2 " w
    shift 2
    for w; do [[ $got != *" $w "* ]] || fail "$what: '$w' should not be in '${got# }'"; done
}

complete -p warmcal >/dev/null 2>&1 || fail "no completion registered for warmcal"
complete -p warmcal-synth >/dev/null 2>&1 || fail "no completion registered for warmcal-synth"

# subcommands: exactly those `warmcal --help` lists today
want=$("$warmcal" --help | awk '/^subcommands:/ {on=1; next} on && /^  [a-z]/ {print $1} on && /^$/ {exit}' |
       sort | tr '\n' ' ' | sed 's/ $//')
[[ -n $want ]] || fail "warmcal --help lists no subcommand"
got=$(complete_words "$warmcal" "")
expect "subcommands" "$got" "$(printf '%s\n' $want --help --version | sort | tr '\n' ' ' | sed 's/ $//')"
expect "subcommands starting with 'va'" "$(complete_words "$warmcal" va)" "validate"

# a subcommand's options, from its --help (not its examples' mpirun -np)
got=$(complete_words "$warmcal" fit -)
has "fit options" "$got" -o --output --json --compare-constant --above-range --parsimony
lacks "fit options" "$got" -np --tokens
has "validate options" "$(complete_words "$warmcal" validate --)" --json --quiet
has "profile options" "$(complete_words "$warmcal" profile --)" --out --convert --keep-spool
lacks "profile options" "$(complete_words "$warmcal" profile --)" --tp -np
expect "fit --above-range" "$(complete_words "$warmcal" fit t.h5 --above-range "")" "extrapolate refuse"
expect "estimate --tokens N: no file names" "$(complete_words "$warmcal" estimate table.json --tokens "")" ""

# import's formats, then a format's own options (argparse's help)
expect "import formats" "$(complete_words "$warmcal" import "")" "--help csv torch-snapshot"
has "import csv options" "$(complete_words "$warmcal" import csv --)" --out --model --producer --world-size
has "import torch-snapshot options" "$(complete_words "$warmcal" import torch-snapshot --m)" \
    --max-entries --max-input-bytes --model

# file names for TRACE/TABLE and -o; folder names for a DIR
expect "fit TRACE" "$(complete_words "$warmcal" fit trace-)" "trace-a.h5 trace-b.h5"
expect "fit -o" "$(complete_words "$warmcal" fit trace-a.h5 -o t)" "table.json trace-a.h5 trace-b.h5"
expect "validate TABLE" "$(complete_words "$warmcal" validate ta)" "table.json"
expect "import csv -o DIR" "$(complete_words "$warmcal" import csv x.csv -o "")" "out-dir"
expect "profile --convert DIR" "$(complete_words "$warmcal" profile --convert o)" "out-dir"

# warmcal-synth: its options and their values
got=$(complete_words "$synth" --m)
has "warmcal-synth options" "$got" --model --max-num-tokens --max-num-seqs --moe-hot-rank
expect "warmcal-synth --model FILE" "$(complete_words "$synth" --model tr)" "trace-a.h5 trace-b.h5"
expect "warmcal-synth --out DIR" "$(complete_words "$synth" --out "")" "out-dir"
expect "warmcal-synth --tp N" "$(complete_words "$synth" --tp "")" ""

# completing runs nothing but --help: not the command after `profile --`,
# not an unknown subcommand
complete_words "$warmcal" profile -- ls "" >/dev/null
complete_words "$warmcal" profile -- "" >/dev/null
complete_words "$warmcal" frobnicate --x >/dev/null
[[ ! -e warmcal-traces ]] || fail "completing 'warmcal profile -- ...' ran warmcal profile"
has "profile -- COMMAND" "$(complete_words "$warmcal" profile -- bas)" bash

# an option the program gains is completed with no change to the script
fake=$tmp/bin/warmcal
mkdir -p "$tmp/bin"
cat > "$fake" <<'EOF'
#!/bin/sh
case "$*" in
  --help) printf 'usage: warmcal SUBCOMMAND\n\nsubcommands:\n  newcmd     a new one\n\n' ;;
  "newcmd --help") printf 'usage: warmcal newcmd [--brand-new] [--into DIR]\n\nexamples:\n  warmcal newcmd --not-an-option\n' ;;
esac
EOF
chmod +x "$fake"
expect "a new subcommand" "$(complete_words "$fake" "")" "--help --version newcmd"
expect "a new option" "$(complete_words "$fake" newcmd --)" "--brand-new --into"

if ((failed)); then exit 1; fi
echo "ok"
