# bash completion for warmcal and warmcal-synth.
#
# Nothing here lists a subcommand or an option: at each completion the
# program itself is asked (`warmcal --help`, `warmcal SUBCOMMAND --help`,
# `warmcal-synth --help`), so the completion follows the program it
# completes, whichever build or version that is. From the help text it takes
# the subcommands (the "subcommands:" list), the formats of a subcommand that
# has some (its usage lines: `warmcal import csv ...`), the options (every
# -x / --name before the examples) and what an option takes: a FILE, TABLE,
# TRACE, CONFIG or SNAPSHOT completes file names, a DIR folder names, a choice
# written a|b its words, any other value nothing.
# Installed as share/bash-completion/completions/warmcal; source it by hand
# with `. tools/completion/warmcal.bash`.

# The help text of "$@" (a program and its subcommand words), up to the
# examples: they show options of other programs (mpirun -np, a server's).
_warmcal_help()
{
    "$@" --help 2>/dev/null | sed -e '/^examples\{0,1\}:/,$d'
}

# "OPTION<TAB>VALUE" per option the help text on stdin names; VALUE is what
# the option takes ("" for a switch). In "-o, --output TABLE" the short
# option takes what the long one takes.
_warmcal_options()
{
    awk '
    {
        line = $0
        while (match(line, /(^|[^A-Za-z0-9_-])--?[A-Za-z][A-Za-z0-9-]*/)) {
            opt = substr(line, RSTART, RLENGTH)
            sub(/^[^-]/, "", opt)
            line = substr(line, RSTART + RLENGTH)
            value = ""
            rest = line
            if (rest ~ /^, --?[A-Za-z]/)
                sub(/^, --?[A-Za-z][A-Za-z0-9-]*/, "", rest)
            if (match(rest, /^[ =]([A-Z][A-Za-z0-9_.:|<>-]*|[a-z]+(\|[a-z]+)+)/))
                value = substr(rest, 2, RLENGTH - 1)
            print opt "\t" value
        }
    }'
}

# Whether $1 is one of the words after it.
_warmcal_one_of()
{
    local word=$1 w
    shift
    for w; do
        [[ $w == "$word" ]] && return 0
    done
    return 1
}

_warmcal()
{
    # (written to work under `set -u` too: a user's shell may have it)
    local cur=${COMP_WORDS[COMP_CWORD]-} prog=${COMP_WORDS[0]-}
    local prev=
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    COMPREPLY=()
    [[ $prog == "~/"* ]] && prog=$HOME/${prog#"~/"}
    command -v -- "$prog" >/dev/null 2>&1 || return 0

    # the words that pick the help text: warmcal [SUBCOMMAND [FORMAT]]
    local -a cmd=("$prog")
    local i first=1 is_synth=0
    [[ ${prog##*/} == warmcal-synth* ]] && is_synth=1
    if ((!is_synth)); then
        local subs
        subs=$("$prog" --help 2>/dev/null |
               awk '/^subcommands:/ { on = 1; next } on && /^  [a-z]/ { print $1 } on && /^$/ { exit }')
        if ((COMP_CWORD == 1)); then
            mapfile -t COMPREPLY < <(compgen -W "$subs --help --version" -- "$cur")
            return 0
        fi
        # only a subcommand the program named is ever run, and only with --help
        _warmcal_one_of "${COMP_WORDS[1]}" $subs || return 0
        cmd+=("${COMP_WORDS[1]}")
        first=2
        # a subcommand whose usage lines name formats (warmcal import csv ...)
        local formats
        formats=$(_warmcal_help "$prog" "${COMP_WORDS[1]}" |
                  awk -v sub_="${COMP_WORDS[1]}" '
                      $1 == "usage:" || $1 ~ /(^|\/)warmcal$/ {
                          for (i = 2; i < NF; i++)
                              if ($i == sub_ && $(i - 1) ~ /(^|\/)warmcal$/ &&
                                  $(i + 1) ~ /^[a-z][a-z0-9-]*$/)
                                  print $(i + 1) }' | sort -u)
        if [[ -n $formats ]]; then
            if ((COMP_CWORD == 2)); then
                mapfile -t COMPREPLY < <(compgen -W "$formats --help" -- "$cur")
                return 0
            fi
            _warmcal_one_of "${COMP_WORDS[2]}" $formats || return 0
            cmd+=("${COMP_WORDS[2]}")
            first=3
        fi
    fi

    # after "--" (warmcal profile -- COMMAND ...): a command, then its files
    for ((i = first; i < COMP_CWORD; i++)); do
        if [[ ${COMP_WORDS[i]} == -- ]]; then
            if ((i == COMP_CWORD - 1)); then
                mapfile -t COMPREPLY < <(compgen -c -- "$cur")
            else
                compopt -o filenames 2>/dev/null
                mapfile -t COMPREPLY < <(compgen -f -- "$cur")
            fi
            return 0
        fi
    done

    local -A takes=()
    local opt value
    while IFS=$'\t' read -r opt value; do
        # a list of choices wins over a metavariable ("POLICY" vs refuse|extrapolate)
        if [[ -z ${takes[$opt]+set} || $value == *[a-z]\|[a-z]* ]]; then
            takes[$opt]=$value
        fi
    done < <(_warmcal_help "${cmd[@]}" | _warmcal_options)

    # the value of the option before the cursor
    if ((COMP_CWORD > first)) && [[ $prev == -* && -n ${takes[$prev]-} ]]; then
        value=${takes[$prev]}
        case $value in
            [a-z]*\|*)
                mapfile -t COMPREPLY < <(compgen -W "${value//|/ }" -- "$cur") ;;
            DIR*)
                compopt -o filenames 2>/dev/null
                mapfile -t COMPREPLY < <(compgen -d -- "$cur") ;;
            FILE* | TABLE* | TRACE* | CONFIG* | SNAPSHOT* | *.json | *.csv)
                compopt -o filenames 2>/dev/null
                mapfile -t COMPREPLY < <(compgen -f -- "$cur") ;;
        esac
        return 0
    fi
    if [[ $cur == -* ]]; then
        mapfile -t COMPREPLY < <(compgen -W "${!takes[*]}" -- "$cur")
        return 0
    fi
    # TRACE..., TABLE, FILE.csv, SNAPSHOT.pickle...: file names
    ((is_synth)) && return 0
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    return 0
}

complete -F _warmcal warmcal warmcal-synth
