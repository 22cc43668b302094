# Reflows `supermachine ... --help` into the layout help2man parses (GNU
# --help style), changing no word of it: man/help2man.sh puts it between the
# CLI and help2man.
#   - "usage: supermachine X ..." becomes "Usage:" (help2man's SYNOPSIS); its
#     deeper-indented continuation lines join it, and an indented
#     "supermachine X ..." line is an alternative ("or:");
#   - prose indented by two spaces right under the usage is unindented, so it
#     reads as a paragraph and not as an option;
#   - a blank line separates prose from option lists, except after a heading
#     that ends in ":" (help2man makes that a subsection).

function kind(s) {
    if (s ~ /^        +[^ ]/) return "cont"                     # continues the line above
    if (s ~ /^ +-/ || s ~ /^  [^ ]+  +[^ ]/) return "list"  # "  -x  text", "  word  text"
    if (s ~ /^  [^ ]/) return "prose"                       # "  says whether..."
    return "left"
}

NR == 1 && /^usage: / { usage = "Usage: " substr($0, 8); in_usage = 1; next }

in_usage {
    if ($0 ~ /^ +supermachine /) { print usage; sub(/^ +/, ""); usage = "  or:  " $0; next }
    if ($0 ~ /^        +[^ ]/) { sub(/^ +/, " "); usage = usage $0; next }
    print usage; print ""; in_usage = 0; last = "blank"; heading = 0
    if ($0 == "") next
}

$0 == "" { print; last = "blank"; heading = 0; next }

{
    k = kind($0)
    if (k == "cont") { print; next }
    if (k == "prose") { sub(/^  /, ""); k = "left" }
    if (last != "blank" && last != k && !heading) print ""
    print
    heading = (k == "left" && $0 ~ /:$/)
    last = k
}

END { if (in_usage) print usage }
