"""The demo shop's bilingual vocabulary: categories, product types, colours, sizes, places.

Everything here is the project's own data; ``demo.py`` combines it deterministically.
"""

from __future__ import annotations

# category key -> (name_zh, name_en)
CATEGORIES: dict[str, tuple[str, str]] = {
    "apparel": ("服饰", "Apparel"),
    "shoes": ("鞋靴", "Shoes"),
    "skincare": ("美妆护肤", "Skincare"),
    "electronics": ("数码3C", "Electronics"),
    "home": ("家居", "Home"),
    "food": ("食品", "Food"),
}

# category -> list of (type_zh, type_en, base price in yuan, peak month of demand or 0)
PRODUCT_TYPES: dict[str, list[tuple[str, str, int, int]]] = {
    "apparel": [
        ("羽绒服", "down jacket", 599, 12), ("连帽卫衣", "hoodie", 199, 11), ("T恤", "T-shirt", 79, 7),
        ("牛仔裤", "jeans", 229, 0), ("衬衫", "shirt", 159, 4), ("连衣裙", "dress", 269, 6),
        ("毛衣", "sweater", 249, 12), ("运动裤", "joggers", 139, 0),
    ],
    "shoes": [
        ("跑步鞋", "running shoes", 459, 4), ("小白鞋", "white sneakers", 329, 0),
        ("马丁靴", "Martin boots", 539, 12), ("凉鞋", "sandals", 169, 7), ("帆布鞋", "canvas shoes", 149, 5),
        ("登山鞋", "hiking boots", 599, 10),
    ],
    "skincare": [
        ("洗面奶", "facial cleanser", 89, 0), ("保湿面霜", "moisturizing cream", 229, 12),
        ("防晒霜", "sunscreen", 139, 7), ("精华液", "serum", 329, 0), ("爽肤水", "toner", 119, 0),
        ("面膜", "sheet masks", 99, 11), ("卸妆油", "cleansing oil", 149, 0),
    ],
    "electronics": [
        ("蓝牙耳机", "Bluetooth earbuds", 399, 11), ("充电宝", "power bank", 159, 0),
        ("智能手表", "smartwatch", 899, 11), ("机械键盘", "mechanical keyboard", 459, 0),
        ("手机壳", "phone case", 59, 9), ("快充充电器", "fast charger", 129, 0),
        ("蓝牙音箱", "Bluetooth speaker", 299, 6),
    ],
    "home": [
        ("四件套", "bedding set", 399, 11), ("保温杯", "insulated bottle", 129, 12), ("香薰蜡烛", "scented candle", 79, 12),
        ("收纳箱", "storage box", 69, 3), ("乳胶枕", "latex pillow", 259, 0), ("陶瓷马克杯", "ceramic mug", 49, 12),
        ("毛巾套装", "towel set", 89, 0),
    ],
    "food": [
        ("坚果礼盒", "mixed nuts gift box", 159, 1), ("挂耳咖啡", "drip coffee bags", 69, 0),
        ("绿茶", "green tea", 129, 4), ("牛肉干", "beef jerky", 59, 0), ("蜂蜜", "honey", 89, 0),
        ("月饼礼盒", "mooncake gift box", 199, 9),
    ],
}

# category -> list of (adjective_zh, adjective_en, price factor)
STYLES: dict[str, list[tuple[str, str, float]]] = {
    "apparel": [("经典款", "Classic", 1.0), ("加厚款", "Thermal", 1.25), ("轻薄款", "Lightweight", 0.9),
                ("宽松款", "Relaxed", 1.0), ("修身款", "Slim-fit", 1.05)],
    "shoes": [("经典款", "Classic", 1.0), ("轻量款", "Featherlight", 1.1), ("防水款", "Waterproof", 1.2),
              ("复古款", "Retro", 0.95), ("缓震款", "Cushioned", 1.15)],
    "skincare": [("温和款", "Gentle", 1.0), ("控油款", "Oil-control", 1.0), ("敏感肌款", "Sensitive-skin", 1.1),
                 ("修护款", "Repair", 1.2), ("清爽款", "Fresh", 0.95)],
    "electronics": [("标准版", "Standard", 1.0), ("Pro版", "Pro", 1.4), ("青春版", "Lite", 0.8),
                    ("旗舰版", "Flagship", 1.7)],
    "home": [("简约款", "Minimal", 1.0), ("北欧风", "Nordic", 1.1), ("日式", "Japanese-style", 1.05),
             ("奢华款", "Deluxe", 1.5), ("经典款", "Classic", 0.95)],
    "food": [("原味", "Original", 1.0), ("家庭装", "Family pack", 1.6), ("礼盒装", "Gift edition", 1.4),
             ("低糖款", "Low-sugar", 1.1), ("尝鲜装", "Trial pack", 0.6)],
}

BRANDS: dict[str, list[str]] = {
    "apparel": ["云朵 Cloudy", "北纬 North", "素简 Plain"],
    "shoes": ["疾风 Swift", "步履 Stride"],
    "skincare": ["水漾 Aqua", "初萃 Pure"],
    "electronics": ["声浪 Wave", "极客 Geek"],
    "home": ["栖居 Nest", "木屿 Woodisle"],
    "food": ["山野 Wild", "甜田 Sweetfield"],
}

# (zh, en)
COLORS: list[tuple[str, str]] = [
    ("黑色", "black"), ("白色", "white"), ("灰色", "grey"), ("藏青色", "navy"), ("红色", "red"),
    ("粉色", "pink"), ("米色", "beige"), ("绿色", "green"), ("蓝色", "blue"), ("卡其色", "khaki"),
]

SIZES: dict[str, list[str]] = {
    "apparel": ["S", "M", "L", "XL", "XXL"],
    "shoes": ["36", "37", "38", "39", "40", "41", "42", "43", "44"],
    "skincare": ["50ml", "100ml"],
    "electronics": ["标准 standard"],
    "home": ["标准 standard", "大号 large"],
    "food": ["250g", "500g"],
}

# categories whose variants come in colours (the others have a single neutral colour)
COLOURED = {"apparel", "shoes", "electronics", "home"}

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "超", "明", "霞", "秀英", "晓东"]
EN_FIRST = ["Emma", "Liam", "Olivia", "Noah", "Ava", "James", "Mia", "Lucas", "Sophia", "Ethan", "Grace", "Leo"]
EN_LAST = ["Smith", "Brown", "Wilson", "Taylor", "Clark", "Lee", "Walker", "Hall", "Young", "King"]

# (city_zh, city_en, district_zh)
CITIES: list[tuple[str, str, str]] = [
    ("上海", "Shanghai", "浦东新区"), ("北京", "Beijing", "朝阳区"), ("广州", "Guangzhou", "天河区"),
    ("深圳", "Shenzhen", "南山区"), ("杭州", "Hangzhou", "西湖区"), ("成都", "Chengdu", "武侯区"),
    ("武汉", "Wuhan", "洪山区"), ("南京", "Nanjing", "鼓楼区"), ("西安", "Xi'an", "雁塔区"),
]

CARRIERS = ["SF Express 顺丰", "ZTO 中通", "JD Logistics 京东物流", "YTO 圆通"]
WAREHOUSE = ("杭州仓", "Hangzhou warehouse")
