package main

import (
	"fmt"

	"github.com/meshwarden/meshwarden/internal/buildinfo"
)

func main() { fmt.Print(buildinfo.Get()) }
