// node-opcua server for plantedge's OPC UA security tests: gopcua's own
// server cannot open secure channels. Listens on 127.0.0.1:$PORT with
// Basic256Sha256, Aes128_Sha256_RsaOaep and Aes256_Sha256_RsaPss in Sign and
// SignAndEncrypt, anonymous and user "operator"/"s3cret", and trusts client
// certificates on first use (stored under $PKI_DIR). Its own key and
// certificate are those in $PKI_DIR/server/own, made when missing (an RSA
// key: 0.15-0.6 s; the Go helper, internal/nodeopcua, writes in one key
// for all the servers of its test process, and the certificate the first
// of them made). Prints one JSON line
// {"endpoint","thumbprint"} when ready.
//
// For the browse tests and benchmark:
//   PLANT=L,M,T       adds L lines x M machines x T tags (Double) under
//                     Objects: ns=1;s=L<l>, s=L<l>.M<m>, s=L<l>.M<m>.T<t>
//   NO_SECURITY=1     also offers SecurityPolicy None
//   MAX_NODES_PER_BROWSE, MAX_NODES_PER_READ, MAX_MONITORED_ITEMS_PER_CALL,
//   MAX_BROWSE_CONTINUATION_POINTS
//                     the server's operation limits (advertised and enforced)
//   MAX_MONITORED_ITEMS_PER_SUBSCRIPTION
//                     a subscription's room for monitored items
//   NO_SUBSCRIPTIONS=1  refuses every subscription (BadTooManySubscriptions)
//   NO_SUBSCRIPTIONS_MS=N  refuses them for N ms only, from the first asked for
//   MAX_SESSIONS=N    room for N sessions (BadTooManySessions beyond); the
//                     server prints "sessions <count>" at each session
//                     created or closed (timed out too), in any case
//   MIN_PUBLISHING_MS=N  the fastest publishing interval the server takes
//                     (node-opcua's: 50 ms): a subscription asking less is
//                     revised up to N
//   HOLD=<Service>:<n>  the n-th request of that service (its schema name:
//                     ActivateSessionRequest, ReadRequest…) is neither served
//                     nor answered; the server prints "held <Service>" when it
//                     comes (a client killed meanwhile, between the steps of
//                     its connect)
//   NO_ACKS=1         takes no Publish request's acknowledgements: every
//                     notification message sent stays offered for Republish
//                     (AvailableSequenceNumbers), as the ones a client
//                     killed had received and not yet acknowledged
//   SESSION_TIMEOUT_MS=N  every session's timeout is revised down to N ms at
//                     most (node-opcua's own cap: 50 minutes)
//   MIN_SESSION_TIMEOUT_MS=N  every session's timeout is revised up to N ms
//                     at least (node-opcua's own floor: 100 ms): a server
//                     keeping a session left behind longer than asked
//   SERVER_CERT_FILE, SERVER_KEY_FILE
//                     the server's certificate and private key (PEM), instead
//                     of those in $PKI_DIR (a certificate about to expire);
//                     SERVER_URI its application URI, as the certificate
//                     names it
//   SMALL_RECEIVE_BUFFER=1
//                     announces a receive buffer of 8,192 bytes while sending
//                     chunks as large as the client takes (allowed: the two
//                     directions are negotiated apart)
"use strict";
const crypto = require("crypto");
const path = require("path");
// node-opcua-server re-exports little; the rest comes from its own
// dependencies, pinned by it.
const { OPCUAServer, Subscription } = require("node-opcua-server");
const { SecurityPolicy } = require("node-opcua-secure-channel");
const { MessageSecurityMode } = require("node-opcua-service-secure-channel");
const { Variant, DataType } = require("node-opcua-variant");
const { OPCUACertificateManager } = require("node-opcua-certificate-manager");
const { nodesets } = require("node-opcua-nodesets");

async function main() {
    const port = parseInt(process.env.PORT || "4840", 10);
    const pki = process.env.PKI_DIR || path.join(__dirname, "pki");
    const serverCertificateManager = new OPCUACertificateManager({
        automaticallyAcceptUnknownCertificate: true,
        rootFolder: path.join(pki, "server"),
    });
    await serverCertificateManager.initialize();
    const num = (name) => parseInt(process.env[name] || "0", 10);
    const noSecurity = process.env.NO_SECURITY === "1";
    if (num("MIN_PUBLISHING_MS")) {
        Subscription.minimumPublishingInterval = num("MIN_PUBLISHING_MS");
    }
    const server = new OPCUAServer({
        port,
        nodeset_filename: [nodesets.standard],
        host: "127.0.0.1",
        hostname: "127.0.0.1",
        serverCertificateManager,
        ...(process.env.SERVER_CERT_FILE ? {
            certificateFile: process.env.SERVER_CERT_FILE,
            privateKeyFile: process.env.SERVER_KEY_FILE,
            serverInfo: { applicationUri: process.env.SERVER_URI },
        } : {}),
        securityPolicies: [
            ...(noSecurity ? [SecurityPolicy.None] : []),
            SecurityPolicy.Basic256Sha256,
            SecurityPolicy.Aes128_Sha256_RsaOaep,
            SecurityPolicy.Aes256_Sha256_RsaPss,
        ],
        securityModes: [
            ...(noSecurity ? [MessageSecurityMode.None] : []),
            MessageSecurityMode.Sign,
            MessageSecurityMode.SignAndEncrypt,
        ],
        ...(process.env.SMALL_RECEIVE_BUFFER === "1" ? { transportSettings: { adjustTransportLimits: (hello) => ({
            receiveBufferSize: Math.min(8192, hello.sendBufferSize),
            sendBufferSize: Math.min(65535, hello.receiveBufferSize),
            maxMessageSize: hello.maxMessageSize || 16 * 1024 * 1024,
            maxChunkCount: hello.maxChunkCount || 5000,
        }) } } : {}),
        serverCapabilities: {
            ...(num("MAX_SESSIONS") ? { maxSessions: num("MAX_SESSIONS") } : {}),
            ...(num("MAX_BROWSE_CONTINUATION_POINTS") ? { maxBrowseContinuationPoints: num("MAX_BROWSE_CONTINUATION_POINTS") } : {}),
            ...(num("MAX_MONITORED_ITEMS_PER_SUBSCRIPTION") ? { maxMonitoredItemsPerSubscription: num("MAX_MONITORED_ITEMS_PER_SUBSCRIPTION") } : {}),
            operationLimits: {
                ...(num("MAX_NODES_PER_BROWSE") ? { maxNodesPerBrowse: num("MAX_NODES_PER_BROWSE") } : {}),
                ...(num("MAX_NODES_PER_READ") ? { maxNodesPerRead: num("MAX_NODES_PER_READ") } : {}),
                ...(num("MAX_MONITORED_ITEMS_PER_CALL") ? { maxMonitoredItemsPerCall: num("MAX_MONITORED_ITEMS_PER_CALL") } : {}),
            },
        },
        allowAnonymous: true,
        userManager: {
            isValidUser: (user, password) => user === "operator" && password === "s3cret",
        },
    });
    await server.initialize();
    const addressSpace = server.engine.addressSpace;
    const ns = addressSpace.registerNamespace("urn:plantedge:test");
    let counter = 41;
    const press = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, browseName: "Press07" });
    ns.addVariable({
        componentOf: press,
        nodeId: "s=Counter",
        browseName: "Counter",
        dataType: "Int32",
        minimumSamplingInterval: 100,
        value: { get: () => new Variant({ dataType: DataType.Int32, value: counter }) },
    });
    setInterval(() => { counter++; }, 200).unref();
    if (process.env.PLANT) {
        const [lines, machines, tags] = process.env.PLANT.split(",").map((x) => parseInt(x, 10));
        for (let l = 0; l < lines; l++) {
            const line = ns.addObject({ organizedBy: addressSpace.rootFolder.objects, nodeId: `s=L${l}`, browseName: `Line${l}` });
            for (let m = 0; m < machines; m++) {
                const machine = ns.addObject({ componentOf: line, nodeId: `s=L${l}.M${m}`, browseName: `Machine${m}` });
                for (let t = 0; t < tags; t++) {
                    ns.addVariable({
                        componentOf: machine,
                        nodeId: `s=L${l}.M${m}.T${t}`,
                        browseName: `Tag${t}`,
                        dataType: "Double",
                        value: { dataType: DataType.Double, value: t },
                    });
                }
            }
        }
    }
    if (process.env.NO_CLOCK === "1") {
        // A server whose clock (Server_ServerStatus_CurrentTime) cannot be
        // monitored: no heartbeat item.
        addressSpace.deleteNode(addressSpace.findNode("i=2258"));
    }
    if (process.env.TICK_MS) {
        // The first machine's first tag counts up every TICK_MS.
        const n = addressSpace.findNode(`ns=${ns.index};s=L0.M0.T0`);
        let v = 0;
        setInterval(() => { v++; n.setValueFromSource({ dataType: DataType.Double, value: v }); },
            parseInt(process.env.TICK_MS, 10)).unref();
    }
    if (process.env.DEAD_SUB_MS) {
        // After DEAD_SUB_MS the server stops publishing the subscriptions
        // it has then, their sessions living on: dead subscriptions.
        setTimeout(() => {
            for (const session of Object.values(server.engine._sessions)) {
                for (const sub of [...session.publishEngine.subscriptions]) {
                    sub.setPublishingMode(false);
                }
            }
        }, parseInt(process.env.DEAD_SUB_MS, 10));
    }
    // afterFirstSubscription runs fn ms after the first subscription a
    // client asks for (the "request" event comes before the request is
    // served): a window counted from the server's start could be over
    // before a client slow to connect (a loaded machine) asked, and it
    // never met the refusal.
    const afterFirstSubscription = (ms, fn) => {
        let asked = false;
        server.on("request", (request) => {
            if (asked || request.schema.name !== "CreateSubscriptionRequest") {
                return;
            }
            asked = true;
            setTimeout(fn, ms).unref();
        });
    };
    if (process.env.NO_SUBSCRIPTIONS === "1" || process.env.NO_SUBSCRIPTIONS_MS) {
        // The constructor refuses 0; the running server takes it.
        const before = server.engine.serverCapabilities.maxSubscriptions;
        server.engine.serverCapabilities.maxSubscriptions = 0;
        if (process.env.NO_SUBSCRIPTIONS_MS) {
            afterFirstSubscription(parseInt(process.env.NO_SUBSCRIPTIONS_MS, 10),
                () => { server.engine.serverCapabilities.maxSubscriptions = before; });
        }
    }
    if (process.env.NO_MONITORING_MS) {
        // For NO_MONITORING_MS the server creates subscriptions but refuses
        // every monitored item, its clock's too (BadTooManyMonitoredItems).
        // -1: node-opcua takes 0 for "its default" at each new subscription.
        const caps = server.engine.serverCapabilities;
        const before = caps.maxMonitoredItemsPerSubscription;
        caps.maxMonitoredItemsPerSubscription = -1;
        afterFirstSubscription(parseInt(process.env.NO_MONITORING_MS, 10),
            () => { caps.maxMonitoredItemsPerSubscription = before; });
    }
    // A handler is looked up by name at each request: one set on the
    // server object stands in front of node-opcua's own.
    const inFront = (service, fn) => {
        const key = `_on_${service}`;
        const served = server[key];
        server[key] = function (message, channel) {
            if (fn(message.request)) {
                return served.call(this, message, channel);
            }
        };
    };
    if (process.env.HOLD) {
        const [service, nth] = process.env.HOLD.split(":");
        let seen = 0;
        inFront(service, () => {
            if (++seen !== parseInt(nth, 10)) {
                return true;
            }
            process.stdout.write(`held ${service}\n`);
            return false;
        });
    }
    if (process.env.NO_ACKS === "1") {
        inFront("PublishRequest", (request) => {
            request.subscriptionAcknowledgements = [];
            return true;
        });
    }
    if (num("SESSION_TIMEOUT_MS")) {
        inFront("CreateSessionRequest", (request) => {
            request.requestedSessionTimeout = Math.min(request.requestedSessionTimeout || Infinity, num("SESSION_TIMEOUT_MS"));
            return true;
        });
    }
    if (num("MIN_SESSION_TIMEOUT_MS")) {
        inFront("CreateSessionRequest", (request) => {
            request.requestedSessionTimeout = Math.max(request.requestedSessionTimeout || 0, num("MIN_SESSION_TIMEOUT_MS"));
            return true;
        });
    }
    const sayCount = () => process.stdout.write(`sessions ${server.currentSessionCount}\n`);
    server.on("create_session", sayCount);
    server.on("session_closed", () => setImmediate(sayCount)); // counted once gone
    await server.start();
    const der = server.getCertificate();
    const thumbprint = crypto.createHash("sha1").update(der).digest("hex");
    process.stdout.write(JSON.stringify({ endpoint: `opc.tcp://127.0.0.1:${port}`, thumbprint }) + "\n");
    // Die with the parent: it holds our stdin.
    process.stdin.on("end", () => process.exit(0));
    process.stdin.resume();
}

main().catch((err) => {
    process.stderr.write(`server failed: ${err && err.stack || err}\n`);
    process.exit(1);
});
