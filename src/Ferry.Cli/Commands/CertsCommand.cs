using System.CommandLine;
using System.Net;
using System.Security.Cryptography;
using Ferry.Transport.Tls;

namespace Ferry.Cli.Commands;

/// <summary>
/// <c>ferry certs --out DIR [--hosts NAME,...] [--ip ADDR,...] [--days 30]</c>: a test CA and one
/// certificate per host for migration TLS, as PEM files for <c>ferry agent --tls-cert --tls-key --tls-ca</c>.
/// </summary>
internal static class CertsCommand
{
    public static Command Create()
    {
        var output = new Option<string>("--out") { Description = "directory to write ca.pem, ca-key.pem and HOST.pem + HOST-key.pem into (created if missing; existing files are never overwritten)", Required = true };
        var hosts = new Option<string>("--hosts") { Description = "comma-separated host names, one certificate each (also their file names)", DefaultValueFactory = _ => "source,destination" };
        var addresses = new Option<string>("--ip") { Description = "comma-separated IP addresses every host certificate names", DefaultValueFactory = _ => "127.0.0.1" };
        var days = new Option<int>("--days") { Description = "how long the CA and the certificates are valid", DefaultValueFactory = _ => 30 };
        var cmd = new Command("certs", "Write a test CA and host certificates for migration TLS (ferry agent --tls-cert --tls-key --tls-ca)") { output, hosts, addresses, days };
        cmd.SetAction(parse =>
        {
            string dir = Path.GetFullPath(parse.GetValue(output)!);
            string[] names = ParseHosts(parse.GetValue(hosts)!);
            IPAddress[] ips = ParseAddresses(parse.GetValue(addresses)!);
            int validDays = parse.GetValue(days);
            if (validDays is < 1 or > 3650)
            {
                throw new UsageException($"--days: {validDays} is not between 1 and 3650");
            }
            string[] files = ["ca.pem", "ca-key.pem", .. names.SelectMany(n => new[] { n + ".pem", n + "-key.pem" })];
            if (files.Distinct(StringComparer.OrdinalIgnoreCase).Count() != files.Length)
            {
                // "a" and "a-key" would both write a-key.pem.
                throw new UsageException($"--hosts: '{parse.GetValue(hosts)}' gives two hosts the same file name");
            }
            if (files.Select(f => Path.Combine(dir, f)).FirstOrDefault(File.Exists) is { } existing)
            {
                throw new UsageException($"--out: '{existing}' exists, and ferry certs never overwrites a certificate or key; choose another directory");
            }
            try
            {
                Directory.CreateDirectory(dir);
                // A unique CA name: two test CAs are never mistaken for each other in a refusal message.
                string caName = "Ferry test CA " + Convert.ToHexString(RandomNumberGenerator.GetBytes(4)).ToLowerInvariant();
                TimeSpan validity = TimeSpan.FromDays(validDays);
                using var ca = TestAuthority.Create(caName, validity);
                ca.WriteAuthority(dir);
                Console.Out.WriteLine($"CA '{ca.Certificate.Subject}', valid until {ca.Certificate.NotAfter.ToUniversalTime():u}: {Path.Combine(dir, "ca.pem")} (key {Path.Combine(dir, "ca-key.pem")})");
                foreach (string name in names)
                {
                    using var host = ca.Issue(name, ips, validity);
                    var (certificate, key) = TestAuthority.WriteHost(dir, name, host);
                    Console.Out.WriteLine($"host '{name}' ({string.Join(", ", ips.Select(i => i.ToString()))}): {certificate} (key {key})");
                }
                string first = names[0];
                Console.Out.WriteLine($"use: ferry agent ... --tls-cert {Path.Combine(dir, first + ".pem")} --tls-key {Path.Combine(dir, first + "-key.pem")} --tls-ca {Path.Combine(dir, "ca.pem")}");
                return 0;
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"ferry: cannot write certificates into '{dir}': {ex.Message}");
                return 1;
            }
        });
        return cmd;
    }

    private static string[] ParseHosts(string text)
    {
        string[] names = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        if (names.Length == 0)
        {
            throw new UsageException("--hosts: give at least one host name");
        }
        foreach (string name in names)
        {
            // Names become file names and DNS names: letters, digits, '-' and '.', and never the CA's own files.
            if (!name.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '.') || name.StartsWith('.') || name is "ca" or "ca-key")
            {
                throw new UsageException($"--hosts: '{name}' is not a usable host name (letters, digits, '-' and '.'; not 'ca')");
            }
        }
        return names;
    }

    private static IPAddress[] ParseAddresses(string text) =>
        [.. text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(a =>
            IPAddress.TryParse(a, out var ip) ? ip : throw new UsageException($"--ip: '{a}' is not an IP address"))];
}
