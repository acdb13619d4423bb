package reputation_test

import (
	"context"
	"fmt"

	"github.com/picket-proxy/picket/reputation"
	"github.com/rs/zerolog"
)

func ExampleClient_Lookup() {
	// A client with only local lists; the proxy passes a Backend too
	// (reputation.NewRemote, or the embedded database of package db).
	c, err := reputation.New(reputation.Config{Block: []string{"blocked.example"}}, zerolog.Nop())
	if err != nil {
		panic(err)
	}
	defer c.Close()
	v, err := c.Lookup(context.Background(), reputation.Query{URL: "https://www.blocked.example/login"})
	if err != nil {
		panic(err)
	}
	fmt.Println(v.Kind, v.Source, v.Blocks())
	// Output: unwanted local true
}

func ExampleCanonicalize() {
	s, _ := reputation.Canonicalize("http://www.GOOgle.com.../a/../b%2525#frag")
	fmt.Println(s)
	// Output: http://www.google.com/b%25
}

func ExampleURL_Expressions() {
	u, _ := reputation.ParseURL("http://a.b.c/1/2.html?param=1")
	for _, e := range u.Expressions() {
		fmt.Println(e)
	}
	// Output:
	// a.b.c/1/2.html?param=1
	// a.b.c/1/2.html
	// a.b.c/
	// a.b.c/1/
	// b.c/1/2.html?param=1
	// b.c/1/2.html
	// b.c/
	// b.c/1/
}
