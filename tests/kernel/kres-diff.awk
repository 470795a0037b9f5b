# SPDX-License-Identifier: MIT
#
# kres-diff.awk - compare KRES lines (kres.h) of a simulator run with those
# of a real-kernel run:  awk -f kres-diff.awk SIM.kres KERNEL.kres
#
# Lines are "KRES <arch> <scenario> <step> key=value ...". Every step of
# every scenario the kernel ran must exist in the simulator's run with the
# same keys and values; a scenario the kernel did not run (skipped) is not
# compared. Prints one "DIFF ..." line per difference, naming the field,
# and exits 1 if there is any.
#
# Lines "KSKIP <arch> <scenario> need=<name> <reason>" (kt_require()) say
# a scenario was skipped for a missing need. The skips must agree too: a
# scenario the kernel skipped that the model ran, or one the model skipped
# that the kernel ran, is a DIFF (the model's level lacks or has a feature
# the kernel does not).
#
# A scenario the simulator could not run says so in a line of step 0 with a
# sim.skip=REASON field (the uffd scenarios where this process may not use
# userfaultfd): the kernel's lines of it are not compared, and a "NOTE ..."
# line on stderr says why.

# key=value fields of a line into arr (awk arrays cannot be returned)
function fields(line, arr,    n, i, parts, eq) {
	split("", arr)
	n = split(line, parts, " ")
	for (i = 5; i <= n; i++) {
		eq = index(parts[i], "=")
		if (eq)
			arr[substr(parts[i], 1, eq - 1)] = substr(parts[i], eq + 1)
		else
			arr[parts[i]] = ""
	}
}

FNR == NR {
	if ($1 == "KSKIP") {
		sk = $2 " " $3
		# (a separate test: awk may create simneed[sk] before the
		# right-hand side is evaluated)
		if (sk in simneed)
			simneed[sk] = simneed[sk] ", " substr($4, 6)
		else
			simneed[sk] = substr($4, 6)
		next
	}
	if ($1 == "KRES" && $4 == "0" && $5 ~ /^sim\.skip=/) {
		simskip[$2 " " $3] = substr($5, 10)
		next
	}
	if ($1 == "KRES") {
		sim[$2 " " $3 " " $4] = $0
		simscen[$2 " " $3] = 1
	}
	next
}

$1 == "KSKIP" {
	sk = $2 " " $3
	if (sk in kneed)
		kneed[sk] = kneed[sk] ", " substr($4, 6)
	else
		kneed[sk] = substr($4, 6)
	next
}

$1 == "KRES" && (($2 " " $3) in simskip) {
	scen = $2 " " $3
	if (!(scen in noted))
		printf "NOTE %s %s: not compared, the simulator did not run it (%s)\n", $2, $3, simskip[scen] > "/dev/stderr"
	noted[scen] = 1
	next
}

$1 == "KRES" {
	scen = $2 " " $3
	key = scen " " $4
	seen[key] = 1
	kscen[scen] = 1
	if (!(scen in simscen)) {
		if (!(scen in reported))
			printf "DIFF %s %s: the simulator has no such scenario\n", $2, $3
		reported[scen] = 1
		bad++
		next
	}
	if (!(key in sim)) {
		printf "DIFF %s %s step %s: only the kernel has this step: %s\n", $2, $3, $4, $0
		bad++
		next
	}
	fields($0, k)
	fields(sim[key], s)
	for (f in k)
		if (!(f in s) || s[f] != k[f]) {
			printf "DIFF %s %s step %s: field %s: kernel=%s sim=%s\n", $2, $3, $4, f, k[f], (f in s) ? s[f] : "(none)"
			bad++
		}
	for (f in s)
		if (!(f in k)) {
			printf "DIFF %s %s step %s: field %s: kernel=(none) sim=%s\n", $2, $3, $4, f, s[f]
			bad++
		}
}

END {
	for (scen in kneed)
		if (scen in simscen) {
			printf "DIFF %s: the kernel skipped it (needs %s), the model ran it\n", scen, kneed[scen]
			bad++
		}
	for (scen in simneed)
		if ((scen in kscen) && !(scen in kneed)) {
			printf "DIFF %s: the kernel ran it, the model skipped it (needs %s)\n", scen, simneed[scen]
			bad++
		}
	for (key in sim) {
		split(key, ks, " ")
		if (((ks[1] " " ks[2]) in kscen) && !(key in seen)) {
			printf "DIFF %s %s step %s: only the simulator has this step: %s\n", ks[1], ks[2], ks[3], sim[key]
			bad++
		}
	}
	exit bad ? 1 : 0
}
