/*!
 * embed.js: one tag, a live HailWhale graph where the tag stands.
 *
 *   <script src="http://whale:8080/embed.js" data-metrics="dollars,dollars/hits"
 *           data-depth="1" data-token="<a read token>"></script>
 *
 * The script finds its own tag, puts a graph right after it, loads jQuery, flot and
 * jquery.hailwhale.js from the Whale it came from (the address of its own src, path
 * included) and draws with the plugin, live unless data-live="false". The data-
 * attributes are the plugin's options (see the README, "One tag: embed.js").
 *
 * Several tags on a page each draw their own graph; the three libraries are loaded once.
 * They are the embed's own copy, whatever the page has: fetched side by side first, then run
 * back to back, after which jQuery.noConflict(true) gives the page back whatever
 * window.jQuery and window.$ were (its own jQuery, or nothing), so a page's jQuery, its
 * version and its plugins are never replaced and never changed. What embed.js leaves in the page:
 * window.HailWhaleEmbed (its jQuery, the graphs drawn), flot's window.Flot, the plugin's
 * <style id="hailwhale-styles">, and the graphs.
 *
 * Nothing read from the tag or from Whale goes into markup: attributes become options, the
 * title and messages are text, and the plugin escapes the labels it hands flot's legend.
 */
(function (window, document) {
  'use strict';

  var LIBRARIES = ['static/vendor/jquery.min.js', 'static/vendor/jquery.flot.js',
                   'static/jquery.hailwhale.js'];
  var MAX_BACKOFF = 60;
  var STRINGS = ['pk', 'period', 'since', 'until', 'limit', 'sort', 'tz', 'token'];
  var NUMBERS = ['depth', 'threshold'];
  var LENGTH = /^\d+(\.\d+)?(px|em|rem|vh|vw|%)?$/;

  // One state per page, whichever of the page's tags runs first.
  var embed = window.HailWhaleEmbed;
  if (!embed) {
    embed = window.HailWhaleEmbed = {jQuery: null, graphs: [], tags: [], waiting: [],
                                     loading: false, failures: 0};
  }

  function isEmbedTag(script) {
    return /\/embed\.js(?:[?#]|$)/.test(script.src || '');
  }

  // The tag that is running now. document.currentScript is that tag for a plain, an async
  // or a deferred tag alike; where it is not set (an old browser, a loader that runs the
  // file itself), every embed tag of the page not taken yet is taken.
  function ownTags() {
    var current = document.currentScript;
    if (current && isEmbedTag(current)) { return [current]; }
    var found = [], scripts = document.getElementsByTagName('script');
    for (var i = 0; i < scripts.length; i++) {
      if (isEmbedTag(scripts[i])) { found.push(scripts[i]); }
    }
    return found;
  }

  function taken(script) {
    for (var i = 0; i < embed.tags.length; i++) {
      if (embed.tags[i] === script) { return true; }
    }
    return false;
  }

  function attribute(script, name) {
    var value = script.getAttribute('data-' + name);
    return value === null ? undefined : value;
  }

  // A JSON list of strings, or an error that says what it is not.
  function jsonList(text) {
    var value = JSON.parse(text);
    var strings = Object.prototype.toString.call(value) === '[object Array]';
    for (var i = 0; strings && i < value.length; i++) { strings = typeof value[i] === 'string'; }
    if (!strings) { throw new Error(text + ' is not a list of names'); }
    return value;
  }

  // "dollars,dollars/hits", or a JSON list for names with commas.
  function metricList(text) {
    if (/^\s*\[/.test(text)) { return jsonList(text); }
    var list = [];
    var parts = text.split(',');
    for (var i = 0; i < parts.length; i++) {
      var name = parts[i].replace(/^\s+|\s+$/g, '');
      if (name) { list.push(name); }
    }
    return list;
  }

  // A JSON list (a path such as ["sales","p123"]) or one name ("sales").
  function dimensionPath(text) {
    if (text === '') { return []; }
    return /^\s*\[/.test(text) ? jsonList(text) : [text];
  }

  // Live by default: "false" (or off, no, 0) turns it off, a number is seconds between polls.
  function liveness(text) {
    if (text === undefined) { return true; }
    var value = text.replace(/^\s+|\s+$/g, '').toLowerCase();
    if (value === 'false' || value === 'off' || value === 'no' || value === '0') { return false; }
    if (/^\d+(\.\d+)?$/.test(value)) { return Number(value); }
    return true;
  }

  function optionsOf(script, base) {
    var options = {url: base, live: liveness(attribute(script, 'live'))};
    for (var i = 0; i < STRINGS.length; i++) {
      var text = attribute(script, STRINGS[i]);
      if (text !== undefined) { options[STRINGS[i]] = text; }
    }
    for (var j = 0; j < NUMBERS.length; j++) {
      var number = attribute(script, NUMBERS[j]);
      // As Whale reads them: a value it refuses comes back as its 400 on the graph.
      if (number !== undefined) { options[NUMBERS[j]] = number; }
    }
    var metrics = attribute(script, 'metrics');
    if (metrics !== undefined) {
      try { options.metrics = metricList(metrics); } catch (e) {
        throw new Error('data-metrics is not a JSON list: ' + e.message);
      }
    }
    var dimensions = attribute(script, 'dimensions');
    if (dimensions !== undefined) {
      try { options.dimensions = dimensionPath(dimensions); } catch (e) {
        throw new Error('data-dimensions is not a JSON list: ' + e.message);
      }
    }
    var drill = attribute(script, 'drill');
    if (drill !== undefined) { options.drill = liveness(drill) !== false; }
    return options;
  }

  function size(element, property, text) {
    if (text === undefined) { return; }
    var value = text.replace(/^\s+|\s+$/g, '');
    if (LENGTH.test(value)) { element.style[property] = /\d$/.test(value) ? value + 'px' : value; }
  }

  // The graph's place: a box right after the tag (a title above it when asked for).
  function box(script) {
    var wrapper = document.createElement('div');
    wrapper.className = 'hailwhale-embed';
    size(wrapper, 'width', attribute(script, 'width'));
    var title = attribute(script, 'title');
    if (title) {
      var heading = document.createElement('div');
      heading.className = 'hailwhale-embed-title';
      heading.style.font = 'bold 14px sans-serif';
      heading.style.margin = '0 0 4px';
      heading.textContent = title;
      wrapper.appendChild(heading);
    }
    var graph = document.createElement('div');
    graph.className = 'hailwhale-embed-graph';
    graph.style.height = '300px';
    size(graph, 'height', attribute(script, 'height'));
    graph.setAttribute('data-hailwhale-state', 'loading');
    wrapper.appendChild(graph);
    script.parentNode.insertBefore(wrapper, script.nextSibling);
    return graph;
  }

  function say(graph, state, text) {
    graph.setAttribute('data-hailwhale-state', state);
    graph.textContent = '';
    var message = document.createElement('div');
    message.className = 'hailwhale-status';
    message.setAttribute('role', 'status');
    message.style.cssText = 'display: inline-block; margin: 1em; padding: 0.6em 1em; ' +
      'background: rgba(255, 250, 235, 0.95); color: #7a4b00; border: 1px solid #e0b060; ' +
      'border-radius: 4px; font: 13px sans-serif';
    message.textContent = text;
    graph.appendChild(message);
  }

  // A child clicked drills down into it (as in the dashboard); with no breadcrumb here, a
  // link above the graph leads back to the tag's own dimension.
  function backLink(job) {
    var $ = embed.jQuery, start = job.options.dimensions || [];
    var back = document.createElement('a');
    back.href = '#';
    back.className = 'hailwhale-embed-back';
    back.style.cssText = 'display: none; font: 12px sans-serif; margin: 0 0 4px';
    back.textContent = '\u2039 back to ' + (start.length ? start.join(' / ') : 'Overall');
    job.graph.parentNode.insertBefore(back, job.graph);
    $(job.graph).on('hailwhale:drill', function () { back.style.display = 'inline-block'; });
    $(back).on('click', function (event) {
      event.preventDefault();
      back.style.display = 'none';
      $(job.graph).hailwhale({dimensions: start.slice()});
    });
  }

  function draw(job) {
    job.graph.textContent = '';
    if (job.options.drill !== false) { backLink(job); }
    embed.jQuery(job.graph).hailwhale(job.options);
    embed.graphs.push(job.graph);
  }

  function head() {
    return document.head || document.getElementsByTagName('head')[0] || document.documentElement;
  }

  function supportsPreload() {
    var link = document.createElement('link');
    return !!(link.relList && link.relList.supports && link.relList.supports('preload'));
  }

  // Fetch every file first (side by side), so that they then run back to back: the page's
  // window.jQuery is Whale's copy only between jQuery's and the plugin's run.
  function preload(urls, done) {
    if (!supportsPreload()) { done(null, []); return; }
    var pending = urls.length, failed = [], links = [];
    for (var i = 0; i < urls.length; i++) {
      (function (index) {
        var link = document.createElement('link');
        link.rel = 'preload';
        link.as = 'script';
        link.href = urls[index];
        link.onload = link.onerror = function (event) {
          failed[index] = event.type === 'error';
          pending -= 1;
          if (pending !== 0) { return; }
          for (var j = 0; j < urls.length; j++) {
            if (failed[j]) { done(urls[j], links); return; }  // the first, in their order
          }
          done(null, links);
        };
        links.push(link);
        head().appendChild(link);
      }(i));
    }
  }

  function run(urls, done) {
    var before = window.jQuery, remaining = urls.length, finished = false;
    function finish(failed) {
      if (finished) { return; }
      finished = true;
      var ours = window.jQuery;
      if (ours && ours !== before && typeof ours.noConflict === 'function') {
        // Back to what the page had (its jQuery and $, or none), ours kept here only.
        ours = ours.noConflict(true);
      } else {
        ours = null;
      }
      if (!failed && !(ours && ours.fn.hailwhale && ours.plot)) { failed = urls[0]; }
      done(failed, failed ? null : ours);
    }
    for (var i = 0; i < urls.length; i++) {
      (function (url) {
        var script = document.createElement('script');
        script.src = url;
        script.async = false;  // run in this order, as soon as each one is there
        script.onload = function () {
          remaining -= 1;
          if (remaining === 0) { finish(null); }
        };
        script.onerror = function () { finish(url); };
        head().appendChild(script);
      }(urls[i]));
    }
  }

  function load(base) {
    // A try again asks anew: the browser keeps a failed fetch of the same address.
    var again = embed.failures ? '?try=' + (embed.failures + 1) : '', urls = [];
    for (var i = 0; i < LIBRARIES.length; i++) { urls.push(base + '/' + LIBRARIES[i] + again); }
    embed.loading = true;
    preload(urls, function (failed, links) {
      function done(failed, ours) {
        for (var j = 0; j < links.length; j++) {
          if (links[j].parentNode) { links[j].parentNode.removeChild(links[j]); }
        }
        embed.loading = false;
        if (failed) { retry(base, failed); return; }
        embed.jQuery = ours;
        embed.failures = 0;
        var jobs = embed.waiting;
        embed.waiting = [];
        for (var k = 0; k < jobs.length; k++) { draw(jobs[k]); }
      }
      if (failed) { done(failed, null); } else { run(urls, done); }
    });
  }

  // Whale down, or the libraries not installed there: said on every graph waiting, and
  // tried again, backing off from 1 second up to a minute (as the plugin does once drawn).
  function retry(base, url) {
    embed.failures += 1;
    var wait = Math.min(MAX_BACKOFF, Math.pow(2, embed.failures - 1));
    for (var i = 0; i < embed.waiting.length; i++) {
      say(embed.waiting[i].graph, 'unreachable', 'HailWhale: could not load ' +
        url.replace(/\?try=\d+$/, '') +
          '; retrying in ' + wait + ' s');
    }
    window.setTimeout(function () { load(base); }, wait * 1000);
  }

  function take(script) {
    embed.tags.push(script);
    // Whale's address is the script's own, path included (a Whale behind a proxy's prefix).
    var base = script.src.replace(/\/embed\.js(?:[?#].*)?$/, '');
    var graph = box(script);
    var options;
    try {
      options = optionsOf(script, base);
    } catch (e) {
      say(graph, 'error', 'HailWhale: ' + e.message);
      return;
    }
    var job = {graph: graph, options: options};
    if (embed.jQuery) {
      draw(job);
      return;
    }
    embed.waiting.push(job);
    if (!embed.loading) { load(base); }
  }

  var tags = ownTags();
  for (var i = 0; i < tags.length; i++) {
    if (!taken(tags[i])) { take(tags[i]); }
  }
}(window, document));
