// An independent verifier of airgate's transparency log: Go's own
// golang.org/x/mod/sumdb/note and sumdb/tlog (what Go's checksum database
// runs on) check a checkpoint's signature, an inclusion proof and a
// consistency proof that airgate made.
//
//	interop VKEY CHECKPOINT PROOFS.json
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type proofs struct {
	Leaf        int64       `json:"leaf"`
	Body        []byte      `json:"body"`
	Inclusion   []tlog.Hash `json:"inclusion"`
	OldSize     int64       `json:"oldSize"`
	OldRoot     tlog.Hash   `json:"oldRoot"`
	Consistency []tlog.Hash `json:"consistency"`
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "interop: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 4 {
		fail("usage: interop VKEY CHECKPOINT PROOFS.json")
	}
	vkey, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	verifier, err := note.NewVerifier(string(vkey))
	if err != nil {
		fail("verifier key: %v", err)
	}
	msg, err := os.ReadFile(os.Args[2])
	if err != nil {
		fail("%v", err)
	}
	n, err := note.Open(msg, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint signature: %v", err)
	}
	// The first three lines of a C2SP checkpoint are the origin, the size
	// and the root; tlog.ParseTree reads the go.sum-style two lines after
	// the origin.
	var origin string
	var rest string
	for i, c := range n.Text {
		if c == '\n' {
			origin, rest = n.Text[:i], n.Text[i+1:]
			break
		}
	}
	tree, err := tlog.ParseTree([]byte("go.sum database tree\n" + rest))
	if err != nil {
		fail("checkpoint text: %v", err)
	}
	raw, err := os.ReadFile(os.Args[3])
	if err != nil {
		fail("%v", err)
	}
	var p proofs
	if err := json.Unmarshal(raw, &p); err != nil {
		fail("proofs: %v", err)
	}
	if err := tlog.CheckRecord(p.Inclusion, tree.N, tree.Hash, p.Leaf, tlog.RecordHash(p.Body)); err != nil {
		fail("inclusion proof of leaf %d in %d: %v", p.Leaf, tree.N, err)
	}
	if err := tlog.CheckTree(p.Consistency, tree.N, tree.Hash, p.OldSize, p.OldRoot); err != nil {
		fail("consistency proof %d -> %d: %v", p.OldSize, tree.N, err)
	}
	fmt.Printf("ok: %s, %d records, signed by %s; leaf %d included; consistent with %d\n",
		origin, tree.N, n.Sigs[0].Name, p.Leaf, p.OldSize)
}
