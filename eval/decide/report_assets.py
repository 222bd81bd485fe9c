"""The inline CSS and JavaScript of report.html (eval/decide/report.py): no CDN, no network, no external file."""

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header p{margin:4px 0 0;color:#c9d1e0;font-size:13px}
nav{padding:8px 24px;background:#e9ecf2;font-size:13px}nav a{margin-right:14px}
main{padding:8px 24px 40px}section.task{background:#fff;border:1px solid #dde2ea;border-radius:6px;margin:16px 0;
padding:8px 18px}h2{margin:10px 0}h3{margin:18px 0 6px;font-size:16px}h4{margin:14px 0 6px;font-size:14px}
table{border-collapse:collapse;font-size:12px;margin:6px 0}th,td{border:1px solid #dde2ea;padding:3px 6px;
vertical-align:top}th{background:#eef1f6;position:sticky;top:0}table.sortable th{cursor:pointer;user-select:none}
table.sortable th:hover{background:#dfe5ef}th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
tr.best td{background:#e7f6ea}tr.tied td{background:#f3fbf4}tr.flag td:last-child{color:#b3261e;font-weight:600}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plots img{max-width:100%;width:640px;border:1px solid #dde2ea}
.rec{border-left:4px solid #2f7d32;background:#f3f8f3;padding:6px 10px;margin:6px 0;font-size:13px}
.rec.weak{border-color:#c77700;background:#fbf6ec}.muted{color:#5b6475;font-size:12px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}
pre{white-space:pre-wrap;word-break:break-word;margin:0}button{font-size:11px;cursor:pointer;margin:1px}
#drill{position:fixed;inset:4% 4% 4% 4%;background:#fff;border:1px solid #888;border-radius:6px;
box-shadow:0 8px 40px rgba(0,0,0,.35);display:none;flex-direction:column;z-index:10}
#drill.open{display:flex}#drill .head{padding:10px 14px;border-bottom:1px solid #dde2ea;display:flex;gap:12px;
align-items:center;flex-wrap:wrap}#drill .body{overflow:auto;padding:0 14px 14px}#drill h3{margin:0;flex:1}
td.ok{color:#2f7d32}td.bad{color:#b3261e;font-weight:600}.st-valid{color:#2f7d32}.st-no_label,.st-empty,
.st-truncated,.st-error{color:#b3261e}td.text{max-width:520px}td.raw{max-width:360px}
details{margin:6px 0}summary{cursor:pointer;font-size:13px}
"""

JS = """
(function(){
  'use strict';
  var DATA = JSON.parse(document.getElementById('report-data').textContent);
  function cellValue(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent.trim();
    var n=parseFloat(v);return (v!==''&&!isNaN(n)&&isFinite(v))?n:v.toLowerCase();}
  function sortTable(th){
    var table=th.closest('table'),idx=Array.prototype.indexOf.call(th.parentNode.children,th);
    var asc=!th.classList.contains('asc');
    table.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
    th.classList.add(asc?'asc':'desc');
    var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){var x=cellValue(a.cells[idx]),y=cellValue(b.cells[idx]);
      if(typeof x!==typeof y){x=String(x);y=String(y);}return (x<y?-1:x>y?1:0)*(asc?1:-1);});
    rows.forEach(function(r){body.appendChild(r);});
  }
  document.querySelectorAll('table.sortable th').forEach(function(th){
    th.addEventListener('click',function(){sortTable(th);});});
  var drill=document.getElementById('drill'),tbody=document.getElementById('drill-rows');
  var onlyErr=document.getElementById('drill-errors'),stSel=document.getElementById('drill-status');
  var current=null;
  function esc(s){return String(s===null||s===undefined?'':s).replace(/[&<>"]/g,function(c){
    return {'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c];});}
  function render(){
    if(!current)return;var run=DATA.runs[current],ex=DATA.examples[run.set];var html=[],shown=0;
    run.rows.forEach(function(r){
      var i=r[0],pred=r[1],raw=r[2],st=r[3],gold=ex.gold[i],ok=pred===gold;
      if(onlyErr.checked&&ok)return;if(stSel.value&&st!==stSel.value)return;shown++;
      html.push('<tr><td>'+esc(ex.ids[i])+'</td><td class="text">'+esc(ex.texts[i])+'</td><td>'+esc(gold)+
        '</td><td class="raw"><pre>'+esc(raw)+'</pre></td><td class="'+(ok?'ok':'bad')+'">'+esc(pred)+
        '</td><td class="st-'+esc(st)+'">'+esc(st)+'</td></tr>');});
    tbody.innerHTML=html.join('');
    document.getElementById('drill-count').textContent=shown+' of '+run.rows.length+' examples';
  }
  function open(id){current=id;document.getElementById('drill-title').textContent=DATA.runs[id].title;
    drill.classList.add('open');render();}
  document.querySelectorAll('button[data-run]').forEach(function(b){
    b.addEventListener('click',function(){open(b.getAttribute('data-run'));});});
  onlyErr.addEventListener('change',render);stSel.addEventListener('change',render);
  document.getElementById('drill-close').addEventListener('click',function(){drill.classList.remove('open');});
  document.addEventListener('keydown',function(e){if(e.key==='Escape')drill.classList.remove('open');});
})();
"""
