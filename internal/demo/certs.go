package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

func printCerts(ctx context.Context, out io.Writer, st *Stack) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+st.PlaneAdmin+"/v1/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(out, "  plane status: %v\n", err)
		return
	}
	defer resp.Body.Close()
	var status map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&status); err != nil {
		fmt.Fprintf(out, "  plane status: %v\n", err)
		return
	}
	if c, ok := status["certificates"]; ok {
		b, _ := json.MarshalIndent(c, "  ", "  ")
		fmt.Fprintf(out, "  %s\n", b)
	} else if !st.opts.MTLS {
		fmt.Fprintln(out, "  mTLS is off in this run (meshwarden demo --mtls turns on Consul Connect certificates over SDS)")
	} else {
		fmt.Fprintln(out, "  the plane's status reports no certificates yet")
	}
}
