"""The printable monthly notice (通报): `reports/monthly/<YYYY>-<MM>-通报.docx`.

The form a township publishes: document number, title, addressees, the rule and its basis,
the month's overall figures with year-on-year, the table of notified cadres (weeks with
dates, required and actual village days, deduction), 处理意见 with the total deduction, and
the issuer and date. It is written with the month's workbook, from the same figures, as part
of the same edition: a provisional month says 临时 in its title, a revision cites the notice
it corrects. docs/reports.md describes it.
"""

from __future__ import annotations

import copy
import datetime as dt
import re
from collections.abc import Sequence

import pandas as pd
from docx import Document
from docx.document import Document as DocumentObject
from docx.enum.section import WD_ORIENT
from docx.enum.table import WD_TABLE_ALIGNMENT
from docx.enum.text import WD_ALIGN_PARAGRAPH
from docx.oxml.ns import qn
from docx.oxml.xmlchemy import BaseOxmlElement
from docx.shared import Cm, Pt
from docx.table import Table as DocxTable
from docx.text.paragraph import Paragraph

from clockd.config import Settings
from clockd.domain import Cadre, Role
from clockd.reports import sheets
from clockd.reports.anchors import HEADERS as ANCHOR_HEADERS
from clockd.reports.anchors import labels as anchor_labels
from clockd.reports.frames import records
from clockd.reports.monthly import MonthFigures, failed_weeks, notified, published
from clockd.reports.period import Basis
from clockd.reports.revisions import CORRECTED, PROVISIONAL, identifier
from clockd.reports.xlsx import safe_text
from clockd.workcal import IsoWeek

TABLE_HEADERS = ("序号", "工号", "姓名", "部门", "未达标周次", "应/实下村天数", "扣款(元)")
APPENDIX = "本通报所依据数据的链末端"
_BODY_SIZE = Pt(12)


def document_number(settings: Settings, year: int, month: int) -> str:
    """The notice's number from `notice.number_format`, e.g. 官政通〔2026〕11号."""
    seq = settings.notice.first_seq + month - 1
    return settings.notice.number_format.format(year=year, month=month, seq=seq)


def title(figures: MonthFigures, basis: Basis) -> str:
    """`关于2026年10月干部下村考勤情况的通报`, with （临时） or （更正） when so."""
    month = figures.month
    text = f"关于{month.year}年{month.month}月干部下村考勤情况的通报"
    if basis.plan.status == PROVISIONAL:
        text += "（临时）"
    elif basis.plan.status == CORRECTED:
        text += "（更正）"
    return text


def build_notice(
    settings: Settings,
    basis: Basis,
    cadres: Sequence[Cadre],
    figures: MonthFigures,
    previous: pd.DataFrame | None,
) -> DocumentObject:
    """The notice as a python-docx document (saved by the caller, beside the workbook)."""

    month = figures.month
    plan = basis.plan
    issued = sheets.local_time(plan.generated_at, settings).date()
    number = document_number(settings, month.year, month.month)
    document = Document()
    _set_up(document, settings.report.font)
    properties = document.core_properties
    properties.title = title(figures, basis)
    properties.identifier = identifier("monthly", month.label, plan.revision)
    properties.author = "clockd"
    properties.created = plan.generated_at.astimezone(dt.UTC).replace(tzinfo=None)
    properties.modified = properties.created

    _paragraph(document, number, align=WD_ALIGN_PARAGRAPH.CENTER, space_after=6)
    _paragraph(
        document,
        title(figures, basis),
        size=Pt(18),
        bold=True,
        space_after=12,
        align=WD_ALIGN_PARAGRAPH.CENTER,
    )
    _paragraph(document, settings.notice.addressees, indent=False)
    _paragraph(document, _rule_text(settings))
    _paragraph(document, _figures_text(figures))
    for text in _status_texts(settings, basis, figures, previous, number):
        _paragraph(document, text, bold=True)

    failing = notified(figures)
    weeks = failed_weeks(figures)
    by_id = {cadre.user_id: cadre for cadre in cadres}
    total = int(failing["deduction_total"].sum()) if len(failing) else 0
    _paragraph(document, "一、未达标人员", bold=True, space_after=3)
    if len(failing):
        _paragraph(
            document,
            f"本月下村天数未达到要求的干部共 {len(failing)} 人、"
            f"{int(failing['failed_weeks'].sum())} 人周，名单如下：",
        )
        rows = []
        for index, row in enumerate(records(failing), start=1):
            uid = str(row.user_id)
            cadre = by_id.get(uid)
            listed = weeks.get(uid, [])
            rows.append(
                (
                    str(index),
                    uid,
                    str(row.name),
                    (cadre.department if cadre is not None else None) or "",
                    "\n".join(sheets.week_short(IsoWeek.parse(label)) for label, _, _ in listed),
                    "\n".join(f"{required}/{valid}" for _, required, valid in listed),
                    str(int(row.deduction_total)),
                )
            )
        rows.append(("合计", "", f"{len(failing)} 人", "", "", "", str(total)))
        _table(document, rows)
        _paragraph(document, "注：应/实下村天数为该周应下村天数/有效下村天数。", size=Pt(10.5))
    else:
        _paragraph(document, f"{month.year}年{month.month}月，全体干部均达到下村要求，无通报人员。")

    _paragraph(document, "二、处理意见", bold=True, space_after=3)
    published_total = int(published(figures)["deduction"].sum()) if len(figures.results) else 0
    if len(failing):
        _paragraph(
            document,
            f"按照考勤办法，对以上 {len(failing)} 名干部未达标的周次，每周扣发岗位补贴 "
            f"{settings.rules.deduction_yuan} 元，共计扣发 {published_total} 元，由镇财政所在"
            "当月岗位补贴中扣除。请各部门督促相关干部切实落实下村要求，如实填写工作清单。",
        )
    else:
        _paragraph(document, "本月无扣发岗位补贴。请全体干部继续保持，切实落实下村要求。")
    _paragraph(
        document,
        "干部对本通报所列考勤数据有异议的，请于通报印发后 5 个工作日内持请假、出差审批材料"
        "向镇党政办申请核实。",
    )

    _paragraph(document, f"附件：{APPENDIX}")

    document.add_paragraph()
    issuer = settings.notice.issuer or f"{settings.township}人民政府"
    _paragraph(document, issuer, align=WD_ALIGN_PARAGRAPH.RIGHT, indent=False)
    _paragraph(document, sheets.chinese_date(issued), align=WD_ALIGN_PARAGRAPH.RIGHT, indent=False)
    _anchor_appendix(document, settings, basis)
    return document


def _anchor_appendix(document: DocumentObject, settings: Settings, basis: Basis) -> None:
    """The chain heads the notice was computed from, on a page of their own after the
    signature, so that `clockd verify --report` can prove the notice's data was not rewritten
    after it was issued (docs/integrity.md)."""
    heading = _paragraph(document, "附件", bold=True, indent=False)
    heading.paragraph_format.page_break_before = True
    _paragraph(
        document, APPENDIX, size=Pt(16), bold=True, space_after=8, align=WD_ALIGN_PARAGRAPH.CENTER
    )
    _paragraph(
        document,
        "下表列出计算本通报时，各考勤终端的打卡记录和各类审批记录所在数据链的最后一条记录及其"
        "哈希值。通报印发后，可用命令 clockd verify --report 本文件 核验这些记录仍在数据链上、"
        "其前的数据未被改动。",
        size=Pt(10.5),
    )
    anchors = basis.anchors
    rows = zip(
        (anchor.chain for anchor in anchors),
        anchor_labels(settings, anchors),
        (str(anchor.seq) for anchor in anchors),
        ("" if anchor.last_id is None else str(anchor.last_id) for anchor in anchors),
        (anchor.hash_hex for anchor in anchors),
        strict=True,
    )
    widths = (Cm(3.4), Cm(2.4), Cm(1.4), Cm(1.8), Cm(7.0))
    _grid(document, ANCHOR_HEADERS, widths, list(rows), size=Pt(7.5), numeric=(2, 3))


def _rule_text(settings: Settings) -> str:
    base = settings.rules.base_days
    same = "，且须在同一村(社区)" if settings.rules.same_village_required else ""
    return (
        f"根据镇党委、镇政府干部下村“过程管理”要求，机关干部每周下村（社区）或企业不少于 "
        f"{base[Role.ORDINARY]} 天，驻村干部不少于 {base[Role.RESIDENT]} 天；干部到村（社区）"
        f"当天须在该村指纹考勤机上午、下午各打卡一次{same}，方计为有效下村一天。节假日所在周的"
        "要求不超过该周工作日数，经批准的请假、出差日不作要求。考勤数据由指纹考勤机自动记录、"
        "系统自动统计，每周一汇总、每月通报，并与岗位补贴挂钩：每周未达标扣发岗位补贴 "
        f"{settings.rules.deduction_yuan} 元。现将{settings.township}考勤情况通报如下。"
    )


def _figures_text(figures: MonthFigures) -> str:
    stats = figures.statistics
    month = figures.month
    weeks = sorted(figures.workdays)
    text = f"{month.year}年{month.month}月（"
    if weeks:
        text += (
            f"考核周{sheets.week_short(IsoWeek.parse(weeks[0]))}至"
            f"{sheets.week_short(IsoWeek.parse(weeks[-1]))}，共 {len(weeks)} 周）"
        )
    else:
        text += "无考核周）"
    text += f"共考核干部 {stats.cadre_count} 人"
    share = figures.met_share()
    if share is not None:
        person_weeks = len(figures.this_month)
        met = int(figures.this_month["met"].astype(bool).sum())
        text += f"，{person_weeks} 人周中达标 {met} 人周，达标率 {share:.1%}"
    if stats.average_valid_days is not None:
        text += f"；人均每周有效下村 {stats.average_valid_days:.1f} 天"
        if stats.last_year_average is not None and stats.year_on_year_change is not None:
            direction = "上升" if stats.year_on_year_change >= 0 else "下降"
            text += (
                f"，去年同期 {stats.last_year_average:.1f} 天，同比{direction} "
                f"{abs(stats.year_on_year_change):.1%}"
            )
    text += (
        f"。通报 {stats.notified_count} 人，扣发岗位补贴 {stats.deduction_total} 元；"
        f"{month.year}年累计通报 {stats.year_to_date_notified} 人，累计扣发 "
        f"{stats.year_to_date_deduction} 元。"
    )
    short = figures.short_weeks()
    if short:
        listed = "、".join(
            f"{sheets.week_short(IsoWeek.parse(label))}仅 {figures.workdays[label]} 个工作日"
            for label in short
        )
        required = figures.required_met_share()
        text += f"本月{listed}，应下村天数相应减少，人均周下村天数因此低于平常月份" + (
            f"；按应下村天数计，完成率为 {required:.1%}。" if required is not None else "。"
        )
    return text


def _status_texts(
    settings: Settings,
    basis: Basis,
    figures: MonthFigures,
    previous: pd.DataFrame | None,
    number: str,
) -> list[str]:
    plan = basis.plan
    texts = []
    if plan.status == PROVISIONAL:
        villages = "、".join(basis.completeness.missing_villages())
        texts.append(
            f"本通报为临时通报：{villages}的考勤机数据尚未全部采集，数字可能变化，"
            "全部采集后将重新核算，如有变化另行更正。"
        )
    if plan.compared is not None:
        compared = plan.compared
        issued = sheets.chinese_date(sheets.local_time(compared.generated_at, settings).date())
        change = ""
        if previous is not None:
            before = int(previous["deduction"].sum())
            after = int(published(figures)["deduction"].sum())
            change = f"扣发岗位补贴合计由 {before} 元更正为 {after} 元。"
        texts.append(
            f"本通报更正{issued}印发的《关于{figures.month.year}年{figures.month.month}月"
            f"干部下村考勤情况的通报》（{number}，第{compared.revision + 1}版），"
            f"原通报同时作废。更正原因：原通报印发后新入库的数据有{sheets.input_changes(basis)}。"
            f"{change}"
        )
    return texts


def _set_up(document: DocumentObject, font_name: str) -> None:
    """A4 portrait with government-document margins; one font for Chinese and digits."""
    section = document.sections[0]
    section.orientation = WD_ORIENT.PORTRAIT
    section.page_width, section.page_height = Cm(21.0), Cm(29.7)
    section.top_margin, section.bottom_margin = Cm(2.5), Cm(2.2)
    section.left_margin, section.right_margin = Cm(2.6), Cm(2.4)
    style = document.styles["Normal"]
    style.font.name = font_name
    style.font.size = _BODY_SIZE
    fonts = style.element.get_or_add_rPr().get_or_add_rFonts()
    for attribute in ("w:ascii", "w:hAnsi", "w:eastAsia", "w:cs"):
        fonts.set(qn(attribute), font_name)
    footer = section.footer.paragraphs[0]
    footer.alignment = WD_ALIGN_PARAGRAPH.CENTER
    footer.add_run("— ")
    _page_field(footer)
    footer.add_run(" —")


def _page_field(paragraph: Paragraph) -> None:
    """A PAGE field: the page number, filled in when the document is laid out."""
    run = paragraph.add_run()
    for kind, text in (("begin", None), (None, "PAGE"), ("end", None)):
        if kind is not None:
            element = run._r.makeelement(qn("w:fldChar"), {qn("w:fldCharType"): kind})
        else:
            element = run._r.makeelement(qn("w:instrText"), {qn("xml:space"): "preserve"})
            element.text = text
        run._r.append(element)


def _paragraph(
    document: DocumentObject,
    text: str,
    *,
    size: Pt | None = None,
    bold: bool = False,
    align: int | None = None,
    indent: bool = True,
    space_after: float = 4,
) -> Paragraph:
    paragraph = document.add_paragraph()
    run = paragraph.add_run(safe_text(text))
    run.bold = bold
    if size is not None:
        run.font.size = size
    form = paragraph.paragraph_format
    form.space_after = Pt(space_after)
    form.line_spacing = 1.25
    if align is not None:
        paragraph.alignment = align  # type: ignore[assignment]
    elif indent:
        form.first_line_indent = Pt(24)
    return paragraph


def _table(document: DocumentObject, rows: Sequence[Sequence[str]]) -> DocxTable:
    """The notified cadres, totals last."""
    widths = (Cm(1.1), Cm(1.5), Cm(1.8), Cm(2.5), Cm(5.4), Cm(2.0), Cm(1.7))
    return _grid(document, TABLE_HEADERS, widths, rows, size=Pt(10.5), numeric=(5, 6))


def _grid(
    document: DocumentObject,
    headers: Sequence[str],
    widths: Sequence[Cm],
    rows: Sequence[Sequence[str]],
    *,
    size: Pt,
    numeric: tuple[int, ...],
) -> DocxTable:
    """A bordered table with its header repeated on each page; a 合计 row is bold, numbers
    (and a leading row number) centred."""
    table = document.add_table(rows=1, cols=len(headers))
    table.style = "Table Grid"
    table.alignment = WD_TABLE_ALIGNMENT.CENTER
    table.autofit = False
    for column, width in zip(table.columns, widths, strict=True):
        column.width = width
    header = table.rows[0]
    header_properties = header._tr.get_or_add_trPr()
    header_properties.append(header_properties.makeelement(qn("w:tblHeader"), {}))
    for cell, text, width in zip(header.cells, headers, widths, strict=True):
        cell.width = width
        run = cell.paragraphs[0].add_run(text)
        run.bold = True
        run.font.size = size
        cell.paragraphs[0].alignment = WD_ALIGN_PARAGRAPH.CENTER
    # python-docx makes a row in about 0.1 ms (a district's chain heads are 3,400 rows): each
    # shape of row (bold or not, which cells centred, which empty) is made once through it,
    # and later rows of that shape are copies of its XML with their own texts.
    made: dict[tuple[bool, tuple[bool, ...], tuple[bool, ...]], BaseOxmlElement] = {}
    for values in rows:
        texts = [safe_text(text) for text in values]
        bold = values[0] == "合计"
        centred = tuple(
            position in numeric or (position == 0 and text.isdigit())
            for position, text in enumerate(values)
        )
        shape = (bold, centred, tuple(map(bool, texts)))
        plain = not any(_RUN_BREAKS.search(text) for text in texts)
        if plain and shape in made:
            row = copy.deepcopy(made[shape])
            for element, text in zip(row.iter(qn("w:t")), filter(None, texts), strict=True):
                element.text = text
                if text != text.strip():
                    element.set(qn("xml:space"), "preserve")
            table._tbl.append(row)
            continue
        cells = table.add_row().cells
        for cell, text, width, middle in zip(cells, texts, widths, centred, strict=True):
            cell.width = width
            paragraph = cell.paragraphs[0]
            run = paragraph.add_run(text)
            run.font.size = size
            run.bold = bold
            paragraph.alignment = WD_ALIGN_PARAGRAPH.CENTER if middle else WD_ALIGN_PARAGRAPH.LEFT
        if plain:
            made[shape] = table.rows[-1]._tr
    return table  # type: ignore[no-any-return]


# Characters python-docx turns into elements of their own in a run (tab, break): a row holding
# one is made through python-docx, not copied.
_RUN_BREAKS = re.compile(r"[\t\n\r\f\v]")
