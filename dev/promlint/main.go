// promlint: Prometheus' own lint rules (client_golang's testutil/promlint,
// what `promtool check metrics` runs) over a /metrics exposition read from
// stdin. Prints each problem and exits 1 when there is any, 2 when the
// text does not parse. Built by dev/tools for airgate's tests.
package main

import (
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func main() {
	problems, err := promlint.New(os.Stdin).Lint()
	if err != nil {
		fmt.Fprintf(os.Stderr, "promlint: %v\n", err)
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Printf("%s: %s\n", p.Metric, p.Text)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}
