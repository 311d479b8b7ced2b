// The HTTP connectors' address policy and base URLs, as pure functions of their input.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkAddress, EMPTY_ALLOW_LIST, parseAllowList } from '../src/connectors/address-policy.ts';
import { validateBaseUrl } from '../src/connectors/http.ts';

describe('validateBaseUrl', () => {
  it('should return the URL normalised, without a trailing slash', () => {
    assert.equal(validateBaseUrl(' https://Example.COM/hs/exchange/ '), 'https://example.com/hs/exchange');
    assert.equal(validateBaseUrl('http://10.0.0.5:8080'), 'http://10.0.0.5:8080');
    assert.equal(validateBaseUrl('http://[::1]:8080/a/'), 'http://[::1]:8080/a');
  });

  it('should refuse what is not an absolute http or https URL with no credentials, query or fragment', () => {
    const cases: [string, RegExp][] = [
      ['', /empty/],
      ['example.com/hs', /must start with http:\/\/ or https:\/\//],
      ['/relative/path', /must start with http:\/\/ or https:\/\//],
      ['ftp://example.com/', /must start with http:\/\/ or https:\/\//],
      ['javascript:alert(1)', /must start with http:\/\/ or https:\/\//],
      ['https://user:hunter2@example.com/', /must not contain a user name or password/],
      ['https://user@example.com/', /must not contain a user name or password/],
      ['https://example.com/hs?x=1', /must not have a query/],
      ['https://example.com/hs?', /must not have a query/],
      ['https://example.com/hs#top', /fragment/],
    ];
    for (const [text, reason] of cases) {
      assert.throws(() => validateBaseUrl(text), reason, text);
    }
    assert.throws(
      () => validateBaseUrl('https://user:hunter2@example.com/'),
      (error: Error) => !error.message.includes('hunter2'),
    );
  });
});

describe('address policy', () => {
  const none = EMPTY_ALLOW_LIST;

  it('should allow public unicast addresses', () => {
    assert.equal(checkAddress('dns.google', '8.8.8.8', none), null);
    assert.equal(checkAddress('dns.google', '2001:4860:4860::8888', none), null);
    assert.equal(checkAddress('example.com', '::ffff:93.184.216.34', none), null);
    assert.equal(checkAddress('example.com', '64:ff9b::8.8.8.8', none), null, 'NAT64 of a public address');
  });

  it('should refuse private, loopback, unspecified and other special addresses that are not allow-listed', () => {
    const refused: [string, RegExp][] = [
      ['10.1.2.3', /^private address, not on HTTP_CONNECTOR_ALLOW_HOSTS$/],
      ['172.16.0.1', /^private address/],
      ['192.168.1.1', /^private address/],
      ['100.64.0.1', /^private address \(carrier-grade NAT\)/],
      ['fd12:3456::1', /^private address \(unique local\)/],
      ['127.0.0.1', /^loopback address/],
      ['127.200.0.1', /^loopback address/],
      ['::1', /^loopback address/],
      ['::ffff:127.0.0.1', /^loopback address/],
      ['64:ff9b::7f00:1', /^loopback address/],
      ['0.0.0.0', /^unspecified address/],
      ['::', /^unspecified address/],
      ['224.0.0.1', /^multicast address/],
      ['ff02::1', /^multicast address/],
      ['255.255.255.255', /^broadcast address/],
      ['240.0.0.1', /^reserved address/],
      ['192.0.2.1', /^reserved address/],
      ['::7f00:1', /^reserved address/],
    ];
    for (const [address, reason] of refused) {
      assert.match(checkAddress('some.host', address, none) ?? 'allowed', reason, address);
    }
  });

  it('should always refuse link-local and cloud metadata addresses, even allow-listed', () => {
    const everything = parseAllowList('0.0.0.0/0, ::/0, metadata.google.internal, 169.254.169.254, fd00:ec2::254, 100.100.100.200');
    const cases: [string, RegExp][] = [
      ['169.254.169.254', /^link-local address \(cloud metadata\)$/],
      ['::ffff:169.254.169.254', /^link-local address \(cloud metadata\)$/],
      ['::ffff:a9fe:a9fe', /^link-local address \(cloud metadata\)$/],
      ['64:ff9b::a9fe:a9fe', /^link-local address \(cloud metadata\)$/],
      ['fd00:ec2::254', /^cloud metadata address$/],
      ['100.100.100.200', /^cloud metadata address$/],
      ['::ffff:100.100.100.200', /^cloud metadata address$/],
      ['169.254.1.1', /^link-local address$/],
      ['fe80::1', /^link-local address$/],
      ['febf::1', /^link-local address$/],
    ];
    for (const [address, reason] of cases) {
      assert.match(checkAddress('metadata.google.internal', address, everything) ?? 'allowed', reason, address);
    }
  });

  it('should allow a private address by exact IP, by CIDR or by host name', () => {
    assert.equal(checkAddress('onec', '10.1.2.3', parseAllowList('10.0.0.0/8')), null);
    assert.equal(checkAddress('onec', '10.1.2.3', parseAllowList('10.1.2.3')), null);
    assert.notEqual(checkAddress('onec', '10.1.2.4', parseAllowList('10.1.2.3')), null);
    assert.equal(checkAddress('onec', '11.0.0.1', parseAllowList('10.0.0.0/8')), null);
    assert.equal(checkAddress('onec', 'fd00::5', parseAllowList('fc00::/7')), null);
    assert.equal(checkAddress('onec', '::1', parseAllowList('[::1]')), null);
    assert.equal(checkAddress('localhost', '::ffff:127.0.0.1', parseAllowList('127.0.0.1')), null, 'judged as its IPv4');
    assert.equal(checkAddress('ONEC.Corp.Example.', '192.168.5.5', parseAllowList('onec.corp.example')), null);
    assert.equal(checkAddress('onec.corp.example', '192.168.5.5', parseAllowList('OneC.Corp.Example')), null);
    assert.notEqual(checkAddress('other.corp.example', '192.168.5.5', parseAllowList('onec.corp.example')), null);
    assert.notEqual(checkAddress('sub.onec.corp.example', '192.168.5.5', parseAllowList('onec.corp.example')), null, 'exact names only');
  });

  it('should refuse what is not an IP address', () => {
    assert.match(checkAddress('x', 'not-an-ip', none) ?? 'allowed', /not an IP address/);
  });
});

describe('parseAllowList', () => {
  it('should read comma-separated host names, IPs and CIDRs, trimming spaces and skipping empty entries', () => {
    const allow = parseAllowList(' onec.local , 10.0.0.0/8,,192.168.1.10 , fc00::/7, [::1], Сервер.рф ');
    // An international name is kept as URLs spell it (punycode), which is what calls compare.
    assert.deepEqual([...allow.hosts], ['onec.local', new URL('http://сервер.рф/').hostname]);
    assert.deepEqual(
      allow.ranges.map(([address, bits]) => `${address.toString()}/${bits}`),
      ['10.0.0.0/8', '192.168.1.10/32', 'fc00::/7', '::1/128'],
    );
  });

  it('should accept an unset or empty variable as an empty list', () => {
    for (const text of [undefined, '', ' , ']) {
      const allow = parseAllowList(text);
      assert.equal(allow.hosts.size, 0);
      assert.equal(allow.ranges.length, 0);
    }
  });

  it('should throw an error naming an entry that is neither a host name, an IP nor a CIDR', () => {
    for (const bad of [
      'not a host',
      'http://onec.local',
      '10.0.0.0/33',
      '300.1.1.1',
      '10/8',
      'fe80::/129',
      'under_score-.example',
      'a..b',
    ]) {
      assert.throws(
        () => parseAllowList(`onec.local, ${bad}`),
        (error: Error) => error.message === `HTTP_CONNECTOR_ALLOW_HOSTS: "${bad}" is neither a host name, an IP address nor a CIDR range`,
        bad,
      );
    }
  });
});
