package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/berth-dev/berth"
	dockerconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/credentials"
	"github.com/docker/cli/cli/config/types"
)

// dockerHubKey is the key docker's config.json gives Docker Hub's
// credentials.
const dockerHubKey = "https://index.docker.io/v1/"

// loginCommand is docker login: it checks the credentials with the
// registry (berth.Login) and stores them as docker's client does, with
// docker's own configuration code: in the credential helper config.json
// names (credsStore, credHelpers), else base64 in its auths
// ($DOCKER_CONFIG/config.json or ~/.docker/config.json), where berth's
// pulls and pushes find them.
func loginCommand(fs *flagSet) runFunc {
	var user, password string
	var passwordStdin bool
	fs.String(&user, "u", "username", "string", "", "Username")
	fs.String(&password, "p", "password", "string", "", "Password")
	fs.Bool(&passwordStdin, "", "password-stdin", "Take the password from stdin")
	return func(ctx context.Context, c *cli, args []string) error {
		registry, key, err := registryKey(args)
		if err != nil {
			return err
		}
		switch {
		case password != "" && passwordStdin:
			return errors.New("--password and --password-stdin are mutually exclusive")
		case passwordStdin && user == "":
			return errors.New("Must provide --username with --password-stdin")
		case password != "":
			fmt.Fprintln(c.stderr, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
		case passwordStdin:
			b, err := io.ReadAll(c.stdin)
			if err != nil {
				return err
			}
			password = strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		}
		if user == "" || password == "" {
			// No prompt: berth reads no password from a terminal.
			return errors.New("Cannot perform an interactive login: give --username and --password-stdin")
		}
		if err := berth.Login(ctx, registry, berth.WithAuth(user, password)); err != nil {
			return err
		}
		cf, err := dockerconfig.Load(dockerconfig.Dir())
		if err != nil {
			return err
		}
		if !cf.ContainsAuth() {
			cf.CredentialsStore = credentials.DetectDefaultStore(cf.CredentialsStore)
		}
		store := cf.GetCredentialsStore(key)
		if err := store.Store(types.AuthConfig{Username: user, Password: password, ServerAddress: key}); err != nil {
			return fmt.Errorf("storing the credentials: %w", err)
		}
		if cf.CredentialsStore == "" && cf.CredentialHelpers[key] == "" {
			fmt.Fprintf(c.stderr, "WARNING! Your password will be stored unencrypted in %s.\n", cf.Filename)
		}
		fmt.Fprintln(c.stdout, "Login Succeeded")
		return nil
	}
}

// logoutCommand is docker logout: it removes the registry's credentials
// from where login stored them, under the key docker uses and the forms
// older clients used ("https://host", "http://host").
func logoutCommand(fs *flagSet) runFunc {
	return func(ctx context.Context, c *cli, args []string) error {
		_, key, err := registryKey(args)
		if err != nil {
			return err
		}
		cf, err := dockerconfig.Load(dockerconfig.Dir())
		if err != nil {
			return err
		}
		keys := []string{key}
		if key != dockerHubKey {
			keys = append(keys, "https://"+key, "http://"+key)
		}
		var found []string
		for _, k := range keys {
			if _, ok := cf.GetAuthConfigs()[k]; ok {
				found = append(found, k)
			}
		}
		if len(found) == 0 {
			fmt.Fprintf(c.stdout, "Not logged in to %s\n", key)
			return nil
		}
		fmt.Fprintf(c.stdout, "Removing login credentials for %s\n", key)
		for _, k := range found {
			if err := cf.GetCredentialsStore(k).Erase(k); err != nil {
				return fmt.Errorf("removing the credentials for %s: %w", k, err)
			}
		}
		return nil
	}
}

// registryKey is the registry a login or logout names (args[0] as docker
// reads it: its host and port, without a scheme or path; none is Docker
// Hub) and its key in config.json, as docker writes it.
func registryKey(args []string) (registry, key string, err error) {
	if len(args) == 0 {
		return "", dockerHubKey, nil
	}
	if strings.Contains(args[0], "@") {
		return "", "", errors.New("a registry address must not carry credentials: give --username and --password-stdin")
	}
	registry = credentials.ConvertToHostname(args[0])
	switch registry {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return "", dockerHubKey, nil
	}
	return registry, registry, nil
}
