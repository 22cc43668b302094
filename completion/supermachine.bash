# bash completion for supermachine(1); `make install` puts it in
# PREFIX/share/bash-completion/completions/supermachine, where bash-completion
# loads it on first use (or: source it).
#
# Nothing here is a copy of the CLI's: the commands come from
# `supermachine --help`, each command's flags (and which take a value) from
# `supermachine COMMAND --help`, image names from `supermachine images` and VM
# ids from `supermachine ps -q`, all asked of the supermachine being completed.

# Per CLI and command: its flags, and those that take a value (FLAG=WORD).
declare -gA _supermachine_flag_cache=() _supermachine_arg_cache=()

# Reads `CLI CMD --help` (CMD empty: the command list) into the caches.
_supermachine_learn() {
    local cli=$1 cmd=$2 key="$1|$2" text line flags=" " args=" " re
    [[ -n ${_supermachine_flag_cache[$key]+set} ]] && return
    if [[ -z $cmd ]]; then
        # The lines under "commands:", up to the blank line.
        text=$("$cli" --help 2>/dev/null)
        local on=0
        while IFS= read -r line; do
            if [[ $line == commands:* ]]; then on=1; continue; fi
            ((on)) || continue
            [[ -z $line ]] && break
            line=${line#"${line%%[! ]*}"}
            flags+="${line%% *} "
        done <<<"$text"
        _supermachine_flag_cache[$key]=$flags
        return
    fi
    text=$("$cli" "$cmd" --help 2>&1)
    # `run` takes the exec options too (its --help says so): learn their values.
    [[ $cmd == run ]] && text+=$'\n'$("$cli" exec --help 2>&1 | sed 's/^/~/')
    # A flag is a "-x" or "--word" after a space, "[", "(" or ","; one with a
    # value word after it takes a value: upper case, maybe in brackets
    # ("--memory MIB", "-e K=V", "--publish [HOSTIP:]HOSTPORT"), choices
    # ("--net on|off") or "..." ("--deny ..."). In "-p, --publish WORD" the
    # short flag takes the value too.
    re='(^|[][ (,~])(--?[a-z][-a-z]*)( (\[?[A-Z][][A-Z_=:/|.]*|[a-z]+(\|[a-z]+)+|\.\.\.))?'
    while IFS= read -r line; do
        local mine=1 short=""
        [[ $line == "~"* ]] && mine=0
        while [[ $line =~ $re ]]; do
            local flag=${BASH_REMATCH[2]} word=${BASH_REMATCH[4]}
            ((mine)) && [[ $flags != *" $flag "* ]] && flags+="$flag "
            [[ -n $word && -n $short ]] && args+="$short=$word "
            [[ -n $word && $args != *" $flag="* ]] && args+="$flag=$word "
            line=${line#*"${BASH_REMATCH[0]}"}
            short=""
            [[ $flag != --* && -z $word && $line == ", --"* ]] && short=$flag
        done
    done <<<"$text"
    _supermachine_flag_cache[$key]="$flags--help "
    _supermachine_arg_cache[$key]=$args
}

_supermachine_images() { "$1" images 2>/dev/null | awk 'NR > 1 && NF { print $1 }'; }
_supermachine_vms() { "$1" ps -q 2>/dev/null; }

_supermachine() {
    local cli=${COMP_WORDS[0]} cur cmd i word key
    COMPREPLY=()
    # The word being completed, from the line itself: ':' (in COMP_WORDBREAKS)
    # must not split "ID:PATH" for cp.
    local line=${COMP_LINE:0:COMP_POINT}
    cur=${line##*[[:space:]]}
    [[ $cli == */* ]] || cli=$(type -P -- "$cli") || return 0
    [[ -x $cli ]] || return 0

    if ((COMP_CWORD <= 1)); then
        _supermachine_learn "$cli" ""
        COMPREPLY=($(compgen -W "${_supermachine_flag_cache[$cli|]} --help --version" -- "$cur"))
        return 0
    fi
    cmd=${COMP_WORDS[1]}
    _supermachine_learn "$cli" "$cmd"
    key="$cli|$cmd"
    local flags=${_supermachine_flag_cache[$key]} args=${_supermachine_arg_cache[$key]}

    # Walk the words before the current one: skip flags and their values,
    # count the positional arguments, stop at "--" (the guest's ARGV).
    local npos=0 after_dashes=0 want_value=""
    for ((i = 2; i < COMP_CWORD; i++)); do
        word=${COMP_WORDS[i]}
        if [[ -n $want_value ]]; then want_value=""; continue; fi
        if ((after_dashes)); then continue; fi
        case $word in
            --) after_dashes=1 ;;
            -*) [[ $word != *=* && $args == *" $word="* ]] && want_value=$word ;;
            :) ;;  # "ID:PATH" split at the colon
            *) [[ ${COMP_WORDS[i + 1]:-} == : ]] || npos=$((npos + 1)) ;;
        esac
    done
    ((after_dashes)) && return 0   # the command in the guest: nothing to offer here

    # The value of a flag: a file when its word says FILE, PATH, BZIMAGE or CPIO.
    if [[ -n $want_value ]]; then
        local w=${args#*" $want_value="}
        w=${w%% *}
        case $w in
            *FILE* | *PATH* | BZIMAGE | CPIO) COMPREPLY=($(compgen -f -- "$cur")); compopt -o filenames 2>/dev/null ;;
        esac
        return 0
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
        return 0
    fi

    case $cmd in
        run | start)
            if ((npos == 0)); then
                COMPREPLY=($(compgen -W "$(_supermachine_images "$cli")" -- "$cur") $(compgen -d -- "$cur"))
            fi ;;
        exec)
            # exec --socket PATH takes no ID.
            if ((npos == 0)) && [[ " ${COMP_WORDS[*]:2:COMP_CWORD-2} " != *" --socket "* ]]; then
                COMPREPLY=($(compgen -W "$(_supermachine_vms "$cli")" -- "$cur"))
            fi ;;
        stop | pause | resume)
            COMPREPLY=($(compgen -W "$(_supermachine_vms "$cli")" -- "$cur")) ;;
        snapshot)
            # ID, then NAME: an image of that name is replaced only with --force.
            if ((npos == 0)); then
                COMPREPLY=($(compgen -W "$(_supermachine_vms "$cli")" -- "$cur"))
            elif ((npos == 1)); then
                COMPREPLY=($(compgen -W "$(_supermachine_images "$cli")" -- "$cur"))
            fi ;;
        rmi)
            COMPREPLY=($(compgen -W "$(_supermachine_images "$cli")" -- "$cur")) ;;
        cp)
            # ID:GUEST_PATH or a host path; nothing to offer inside the guest.
            if [[ $cur != *:* ]] && ((npos < 2)); then
                local id
                for id in $(_supermachine_vms "$cli"); do
                    [[ $id == "$cur"* ]] && COMPREPLY+=("$id:")
                done
                COMPREPLY+=($(compgen -f -- "$cur"))
                # "ID:" goes on with the guest path: no space after it.
                if ((${#COMPREPLY[@]} == 1)) && [[ ${COMPREPLY[0]} == *: ]]; then
                    compopt -o nospace 2>/dev/null
                else
                    compopt -o filenames 2>/dev/null
                fi
            fi ;;
    esac
    return 0
}

complete -F _supermachine supermachine
