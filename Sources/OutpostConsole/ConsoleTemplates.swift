import Mustache

/// The console's pages, server-rendered (swift-mustache; `{{x}}` is HTML-escaped, `{{{x}}}` only for HTML the
/// console made). One layout, narrow-screen friendly, no script.
enum ConsoleTemplates {
    static func library() throws -> MustacheLibrary {
        var l = MustacheLibrary()
        for (name, text) in all { try l.register(text, named: name) }
        return l
    }

    static let all: [(String, String)] = [
        ("layout", layout), ("login", login), ("overview", overview), ("machine", machine), ("job", job), ("alerts", alerts),
        ("browse", browse), ("fleet", fleet),
    ]

    /// A long word (a point's 64-digit id, a path) wraps rather than widen the page past a phone's width; tables
    /// scroll in their own box.
    static let layout = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>{{title}} · Outpost</title>
        <style>
        body{font:15px/1.4 system-ui,sans-serif;margin:0;color:#222}header{background:#24476b;color:#fff;padding:.5em 1em;display:flex;flex-wrap:wrap;gap:1em;align-items:center}
        header a{color:#fff}main{padding:1em;max-width:70em;overflow-wrap:break-word}table{border-collapse:collapse;width:100%}td,th{padding:.3em .5em;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
        .ok{background:#e3f4e3}.late{background:#fbe3e3}.warn{background:#fff4d6}.muted{color:#777}form.inline{display:inline}
        .scroll{overflow-x:auto}button{padding:.3em .8em}input{padding:.3em}
        </style></head><body>
        <header><strong>Outpost {{site}}</strong>{{#admin}}{{#nav}}<a href="{{href}}">{{label}}</a>{{/nav}}
        <form class="inline" method="post" action="/logout"><input type="hidden" name="csrf" value="{{csrf}}"><button>Log out {{admin}}</button></form>{{/admin}}</header>
        <main>{{#flash}}<p class="warn">{{flash}}</p>{{/flash}}{{{body}}}</main></body></html>
        """

    static let login = """
        <h1>Log in</h1>{{#error}}<p class="late">{{error}}</p>{{/error}}
        <form method="post" action="/login"><p><label>Administrator<br><input name="name" autocomplete="username" required></label></p>
        <p><label>Password<br><input name="password" type="password" autocomplete="current-password" required></label></p><button>Log in</button></form>
        """

    static let overview = """
        <h1>Overview</h1>
        <p>Disk: {{diskFree}} free of {{diskTotal}} · Vault: {{vault}}</p>
        <h2>Open alerts</h2>{{^alerts}}<p class="muted">none</p>{{/alerts}}
        <ul>{{#alerts}}<li><strong>{{kind}}</strong> {{subject}}: {{message}}</li>{{/alerts}}</ul>
        <h2>Machines</h2><div class="scroll"><table><tr><th>Machine</th><th>Group</th><th>Last good backup</th><th>Points</th><th>Agent</th><th></th></tr>
        {{#machines}}<tr class="{{status}}"><td><a href="/machines/{{name}}">{{name}}</a></td><td>{{group}}</td><td>{{lastGood}}</td><td>{{points}}</td><td>{{agent}}</td>
        <td><form class="inline" method="post" action="/machines/{{name}}/backup-now"><input type="hidden" name="csrf" value="{{csrf}}"><button>Back up now</button></form></td></tr>{{/machines}}
        </table></div>
        <h2>Actions</h2>
        <form class="inline" method="post" action="/forward-now"><input type="hidden" name="csrf" value="{{csrf}}"><button>Forward now</button></form>
        <form class="inline" method="post" action="/check"><input type="hidden" name="csrf" value="{{csrf}}"><button>Run a check</button></form>
        <h2>Recent jobs</h2><div class="scroll"><table><tr><th>Job</th><th>Kind</th><th>Machine</th><th>State</th><th>Started</th><th>Detail</th></tr>
        {{#jobs}}<tr><td><a href="/jobs/{{id}}">{{id}}</a></td><td>{{kind}}</td><td>{{machine}}</td><td>{{state}}</td><td>{{started}}</td><td>{{detail}}</td></tr>{{/jobs}}</table></div>
        """

    static let machine = """
        <h1>{{name}}</h1><p>Group: {{group}} · Schedule: {{schedule}} · Agent: {{agent}}</p>
        <h2>Recovery points</h2><p>{{pointsShown}}{{#hasNewer}} · <a href="/machines/{{name}}?page={{newerPage}}">newer</a>{{/hasNewer}}{{#hasOlder}} · <a href="/machines/{{name}}?page={{olderPage}}">older</a>{{/hasOlder}}</p>
        <div class="scroll"><table><tr><th>Point</th><th>Finished</th><th>Tier</th><th>Files</th><th>Size</th></tr>
        {{#points}}<tr><td><a href="/points/{{id}}/browse">{{short}}</a></td><td>{{finished}}</td><td>{{tier}}</td><td>{{files}}</td><td>{{size}}</td></tr>{{/points}}</table></div>
        <h2>Jobs</h2><div class="scroll"><table><tr><th>Job</th><th>State</th><th>Trigger</th><th>Started</th><th>Detail</th></tr>
        {{#jobs}}<tr><td><a href="/jobs/{{id}}">{{id}}</a></td><td>{{state}}</td><td>{{trigger}}</td><td>{{started}}</td><td>{{detail}}</td></tr>{{/jobs}}</table></div>
        """

    static let job = """
        <h1>Job {{id}}</h1><p>{{kind}} {{machine}} · {{state}} · started {{started}} · ended {{ended}} · {{bytes}} · {{files}} files{{#trigger}} · trigger {{trigger}}{{/trigger}}</p>
        <p>{{detail}}</p>{{#point}}<p>Recovery point <a href="/points/{{point}}/browse">{{point}}</a></p>{{/point}}
        <h2>Failed files</h2>{{^failed}}<p class="muted">none</p>{{/failed}}<ul>{{#failed}}<li><code>{{path}}</code>: {{reason}}</li>{{/failed}}</ul>
        """

    static let alerts = """
        <h1>Alerts</h1><div class="scroll"><table><tr><th>Opened</th><th>Kind</th><th>Subject</th><th>State</th><th>Message</th></tr>
        {{#alerts}}<tr class="{{class}}"><td>{{opened}}</td><td>{{kind}}</td><td>{{subject}}</td><td>{{state}}</td><td>{{message}}</td></tr>{{/alerts}}</table></div>
        {{^alerts}}<p class="muted">no alerts in the last 30 days</p>{{/alerts}}
        """

    static let browse = """
        <h1>{{machine}} · {{finished}}</h1><p>Point {{id}} ({{tier}}) · <code>{{path}}</code>
        {{#parent}} · <a href="/points/{{id}}/browse?path={{parent}}">up</a>{{/parent}}
        · <a href="/points/{{id}}/tar?path={{pathQuery}}">download this folder (tar)</a></p>
        <form method="get" action="/points/{{id}}/browse"><input type="hidden" name="path" value="{{path}}"><input name="q" value="{{q}}" placeholder="name contains"> <button>Search</button></form>
        <div class="scroll"><table><tr><th>Name</th><th>Size</th><th>Modified</th></tr>
        {{#entries}}<tr><td>{{#folder}}<a href="/points/{{id}}/browse?path={{query}}">{{name}}/</a>{{/folder}}{{#file}}<a href="/points/{{id}}/file?path={{query}}">{{name}}</a>{{/file}}{{#other}}{{name}} ({{type}}){{/other}}</td><td>{{size}}</td><td>{{modified}}</td></tr>{{/entries}}
        </table></div>{{#truncated}}<p class="muted">only the first {{limit}} shown</p>{{/truncated}}
        """

    /// The vault's fleet view (`VaultConsoleServer`): read-only, no forms but the layout's log-out.
    static let fleet = """
        <h1>Fleet</h1><p>{{active}} relays · {{machines}} machines, {{late}} late · {{alerts}} open alerts · {{now}}</p>
        {{#hasReplica}}<p class="{{replicaClass}}">Secondary copy set (GRS): {{replica}}</p>{{/hasReplica}}
        <div class="scroll"><table><tr><th>Relay</th><th>Vault lag</th><th>Machines</th><th>Open alerts</th><th>Last contact</th>
        <th>Relay disk</th><th>On the vault</th><th>Registered</th><th>Version</th></tr>
        {{#relays}}<tr class="{{class}}"><td><strong>{{name}}</strong> <span class="muted">{{id}}</span></td><td>{{lag}}</td><td>{{machines}}</td>
        <td>{{alerts}}</td><td>{{contact}}</td><td>{{disk}}</td><td>{{space}}</td><td>{{registered}}</td><td>{{version}}</td></tr>{{/relays}}
        </table></div>{{^relays}}<p class="muted">no relay is registered</p>{{/relays}}
        <h2>Soft-deleted containers</h2>{{^removed}}<p class="muted">none</p>{{/removed}}
        {{#hasRemoved}}<div class="scroll"><table><tr><th>Relay</th><th>Removed</th><th>Purged after</th><th>On the vault</th></tr>{{/hasRemoved}}
        {{#removed}}<tr><td>{{name}} <span class="muted">{{id}}</span></td><td>{{removedAt}}</td><td>{{purge}}</td><td>{{space}}</td></tr>{{/removed}}
        {{#hasRemoved}}</table></div>{{/hasRemoved}}
        """
}
