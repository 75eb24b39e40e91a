package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/plantedge/plantedge/agent/config"
	"github.com/plantedge/plantedge/connectors/opcua"
)

// browseOptions are the flags of `plantedge browse`.
type browseOptions struct {
	endpoint     string
	opts         opcua.BrowseOptions
	passwordFile string
}

func newBrowseCmd() *cobra.Command {
	o := &browseOptions{}
	cmd := &cobra.Command{
		Use:   "browse ENDPOINT",
		Short: "Print an OPC UA server's address space as a tree of node ids, data types and values",
		Long: "browse connects to ENDPOINT (opc.tcp://host:port) and prints the nodes under --node, one a line:\n" +
			"node id, browse name, and for variables the data type and current value. Copy node ids\n" +
			"from here into the configuration. Large address spaces are paged and bounded by --depth\n" +
			"and --max-nodes. A secured server needs --security-policy (and --cert/--key, or --data-dir for a\n" +
			"generated certificate the server must trust). It exits 1 when the tree was cut short (--max-nodes),\n" +
			"a node's children could not be read, or the server could not be reached.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.endpoint = args[0]
			if err := o.Validate(); err != nil {
				return &exitError{code: exitUsage, cause: err, msg: fmt.Sprintf("%v (see: plantedge browse --help)", err)}
			}
			return o.Run(cmd.Context(), cmd.OutOrStdout())
		},
	}
	o.AddFlags(cmd)
	return cmd
}

// AddFlags registers the command's flags.
func (o *browseOptions) AddFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.opts.Node, "node", opcua.DefaultBrowseNode, "start node id (ns=2;s=..., ns=2;i=..., nsu=URI;s=...)")
	f.IntVar(&o.opts.Depth, "depth", opcua.DefaultBrowseDepth, "levels to descend below --node (0: the node alone, with its type and current value)")
	f.IntVar(&o.opts.MaxNodes, "max-nodes", opcua.DefaultBrowseMaxNodes, "stop after printing this many nodes")
	f.BoolVar(&o.opts.NamespaceURIs, "namespace-uris", false, "print node ids as nsu=URI;... (they stay valid if the server renumbers its namespaces)")
	f.StringVar(&o.opts.SecurityPolicy, "security-policy", "None", "None | Basic256Sha256 | Aes128_Sha256_RsaOaep | Aes256_Sha256_RsaPss")
	f.StringVar(&o.opts.SecurityMode, "security-mode", "", "None | Sign | SignAndEncrypt (default: None, or SignAndEncrypt with a secure policy)")
	f.StringVar(&o.opts.CertFile, "cert", "", "client certificate file (PEM or DER)")
	f.StringVar(&o.opts.KeyFile, "key", "", "client private key file (PEM or DER)")
	f.StringVar(&o.opts.DataDir, "data-dir", "", "directory keeping a generated client certificate (opcua-browse.crt/.key)")
	f.StringVar(&o.opts.ServerThumbprint, "server-thumbprint", "", "refuse a server whose certificate SHA-1 is not this (hex)")
	f.StringVar(&o.opts.Username, "username", "", "user name (default anonymous)")
	f.StringVar(&o.passwordFile, "password-file", "", "file holding the password for --username")
	o.opts.Timeout = opcua.DefaultBrowseTimeout
	f.Var((*secondsOrDuration)(&o.opts.Timeout), "timeout", "how long each request may take (30s, 1m; a bare number is seconds)")
}

// Validate checks the flags before any I/O.
func (o *browseOptions) Validate() error {
	var errs []error
	if !config.ValidOPCUAEndpoint(o.endpoint) {
		errs = append(errs, fmt.Errorf("endpoint %q: want opc.tcp://host:port (a port of 1 to 65535)", o.endpoint))
	}
	if !slices.Contains(config.SecurityPolicies, o.opts.SecurityPolicy) {
		errs = append(errs, fmt.Errorf("--security-policy %q: want one of %s", o.opts.SecurityPolicy, strings.Join(config.SecurityPolicies, ", ")))
	}
	if o.opts.SecurityMode != "" && !slices.Contains(config.SecurityModes, o.opts.SecurityMode) {
		errs = append(errs, fmt.Errorf("--security-mode %q: want one of %s", o.opts.SecurityMode, strings.Join(config.SecurityModes, ", ")))
	}
	if t := o.opts.ServerThumbprint; t != "" {
		if err := opcua.CheckThumbprint(t); err != nil {
			errs = append(errs, fmt.Errorf("--server-thumbprint %q: want the certificate's SHA-1 in hex (40 digits)", t))
		}
	}
	if o.opts.Timeout <= 0 {
		errs = append(errs, fmt.Errorf("--timeout %s: want more than 0", o.opts.Timeout))
	}
	if o.opts.Node != "" {
		if err := opcua.CheckNodeID(o.opts.Node); err != nil {
			errs = append(errs, fmt.Errorf("--node: %w", err))
		}
	}
	if o.opts.Depth < 0 {
		errs = append(errs, fmt.Errorf("--depth %d: want 0 (the node alone: its type and value) or more", o.opts.Depth))
	}
	if o.opts.MaxNodes < 1 {
		errs = append(errs, fmt.Errorf("--max-nodes %d: want at least 1", o.opts.MaxNodes))
	}
	if (o.opts.CertFile == "") != (o.opts.KeyFile == "") {
		errs = append(errs, errors.New("--cert and --key go together"))
	}
	if o.passwordFile != "" && o.opts.Username == "" {
		errs = append(errs, errors.New("--password-file needs --username"))
	}
	return errors.Join(errs...)
}

// Run browses and writes the tree to w.
func (o *browseOptions) Run(ctx context.Context, w io.Writer) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if o.passwordFile != "" {
		b, err := os.ReadFile(o.passwordFile)
		if err != nil {
			return fmt.Errorf("read password file: %w", err)
		}
		o.opts.Password = strings.TrimRight(string(b), "\r\n")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	return opcua.Browse(ctx, o.endpoint, o.opts, w)
}
