"""Natural-language captions for synthetic clips, written from varied templates like AudioCaps/Clotho captions.

Each class has its own wording (noun phrases with their article, matching verbs and gerunds, whole
clauses with their own subject) and wording that replaces it for particular variants a source reports
(``intensity=drizzle`` for light rain, ``passing=yes`` for a siren driving past). Modifiers are worded
as adjectives ("a distant siren") or adverbials ("in the distance"); every caption of a clip names every
applied modifier and every source, and mixtures say which source is in the background.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace

import numpy as np

from evaluation.synth.sources import Params


@dataclass(frozen=True)
class Wording:
    nouns: tuple[str, ...] = ()  # with their article, agreeing with `verbs`: "a siren", "heavy rain"
    verbs: tuple[str, ...] = ()  # "wails", "is blaring"
    gerunds: tuple[str, ...] = ()  # "wailing"
    scenes: tuple[str, ...] = ()  # clauses with their own subject: "someone types on a keyboard"


@dataclass(frozen=True)
class ClassWording:
    base: Wording
    keywords: tuple[str, ...]  # every caption naming this class contains one of these
    variants: Mapping[str, Wording]  # "param=value" -> fields replacing the base's


def _w(nouns: str = "", verbs: str = "", gerunds: str = "", scenes: str = "") -> Wording:
    def split(text: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in text.split("|") if part.strip())

    return Wording(split(nouns), split(verbs), split(gerunds), split(scenes))


WORDING: dict[str, ClassWording] = {
    "siren": ClassWording(
        _w(
            "a siren|an emergency siren|an emergency vehicle siren",
            "wails|is wailing|blares|howls|sounds",
            "wailing|blaring|howling|sounding",
            "an emergency vehicle sounds its siren|a siren goes off",
        ),
        ("siren", "fire truck", "fire engine", "ambulance", "police"),
        {
            "pattern=yelp": _w(verbs="yelps|whoops|wails|blares", gerunds="yelping|whooping|wailing"),
            "pattern=hi-lo": _w(
                verbs="alternates between two tones|wails|blares",
                gerunds="alternating between two tones|wailing|blaring",
            ),
            "vehicle=police": _w(
                "a police siren|a police car siren|a siren|a police car",
                scenes="a police car sounds its siren|police respond with a siren wailing",
            ),
            "vehicle=ambulance": _w(
                "an ambulance siren|an ambulance|a siren",
                scenes="an ambulance sounds its siren|an ambulance responds to a call",
            ),
            "vehicle=fire engine": _w(
                "a fire engine siren|a fire truck siren|a fire truck|a fire engine",
                scenes="a fire truck sounds its siren|a fire engine rushes to a fire",
            ),
            "passing=yes": _w(
                verbs="passes by|races past|speeds by|drives past",
                gerunds="passing by|racing past|speeding by|driving past",
                scenes="an emergency vehicle races past with its siren on|a siren passes by on the street",
            ),
        },
    ),
    "car horn": ClassWording(
        _w(
            "a car horn|a horn|a vehicle horn",
            "honks|beeps|sounds|blares",
            "honking|beeping|blaring",
            "a driver honks the horn|someone honks a car horn",
        ),
        ("horn", "honk"),
        {
            "style=short honks": _w(
                verbs="honks|beeps|toots|gives short honks",
                gerunds="honking|beeping|tooting",
                scenes="a driver taps the horn|someone honks a car horn briefly",
            ),
            "style=long honk": _w(
                verbs="blares|sounds a long blast|honks for a long time",
                gerunds="blaring|sounding a long blast",
                scenes="a driver leans on the horn|a driver holds down the horn",
            ),
        },
    ),
    "alarm beeping": ClassWording(
        _w(
            "an alarm|a beeping alarm|an electronic alarm",
            "beeps|is beeping|beeps repeatedly|goes off",
            "beeping|beeping repeatedly|going off",
            "an alarm goes off|an alarm beeps over and over",
        ),
        ("alarm", "beep"),
        {
            "device=alarm clock": _w(
                "an alarm clock|a digital alarm clock|an alarm", scenes="an alarm clock goes off|a bedside alarm beeps"
            ),
            "device=smoke alarm": _w(
                "a smoke alarm|a smoke detector alarm|a fire alarm",
                verbs="beeps|beeps in sets of three|goes off|sounds",
                scenes="a smoke detector alarm goes off|a fire alarm beeps",
            ),
            "device=beeper": _w(
                "a beeper|an electronic beeper|a warning beeper",
                scenes="a machine beeps over and over|an electronic device beeps",
            ),
        },
    ),
    "telephone ringing": ClassWording(
        _w(
            "a telephone|a phone|a ringing phone",
            "rings|is ringing|keeps ringing|rings repeatedly",
            "ringing|ringing repeatedly",
            "a phone rings and nobody answers|a telephone rings",
        ),
        ("phone", "ring"),
        {
            "kind=old bell phone": _w(
                "an old telephone|a rotary phone|an old-fashioned telephone|a vintage phone",
                "rings|rings its bell|jangles",
                "ringing|jangling",
                "an old rotary phone rings|a vintage telephone rings",
            ),
            "kind=electronic phone": _w(
                "a telephone|an office phone|a desk phone|a cordless phone",
                "trills|rings|is ringing",
                "trilling|ringing",
                "an office telephone rings|a desk phone rings",
            ),
            "kind=mobile phone": _w(
                "a cell phone|a mobile phone|a smartphone",
                "plays its ringtone|rings|plays a ringtone",
                "playing a ringtone|ringing",
                "a mobile phone rings with a ringtone|someone's cell phone rings",
            ),
        },
    ),
    "doorbell": ClassWording(
        _w(
            "a doorbell|a door chime|the doorbell",
            "rings|chimes|sounds",
            "ringing|chiming",
            "someone rings the doorbell|a visitor presses the doorbell|someone at the door rings the bell",
        ),
        ("doorbell", "door chime", "door"),
        {
            "chime=ding-dong": _w(verbs="goes ding-dong|chimes ding-dong|rings|chimes"),
            "chime=three-tone": _w(verbs="plays a three-note chime|chimes|rings"),
            "chime=four-tone": _w(verbs="plays a four-note chime|chimes a short melody|rings"),
            "presses=2": _w(scenes="someone rings the doorbell twice|a visitor rings the doorbell again"),
        },
    ),
    "church bell": ClassWording(
        _w(
            "a church bell|a large bell|a cathedral bell",
            "tolls|rings|clangs|strikes",
            "tolling|ringing|clanging",
            "a bell tolls in a church tower|a church bell rings out",
        ),
        ("church", "bell", "cathedral"),
        {
            "style=pealing": _w(
                "church bells|cathedral bells|several church bells",
                "ring|peal|ring out in sequence",
                "ringing|pealing",
                "bells peal from a church tower|church bells ring out in turn",
            ),
        },
    ),
    "whistle": ClassWording(
        _w("a whistle", "blows|sounds", "blowing|sounding", "someone blows a whistle"),
        ("whistl",),
        {
            "kind=referee whistle": _w(
                "a referee whistle|a sports whistle|a whistle|a coach's whistle",
                "blows|sounds|is blown",
                "blowing|sounding|being blown",
                "a referee blows a whistle|a coach blows a whistle",
            ),
            "kind=whistled tune": _w(
                "a whistled tune|a whistled melody|a cheerful whistled tune",
                "plays|is heard|drifts by",
                "playing|drifting by",
                "a man whistles a tune|someone whistles a melody|a person whistles a song",
            ),
            "kind=wolf whistle": _w(
                "a wolf whistle|a catcall whistle",
                "rings out|sounds",
                "ringing out",
                "someone gives a wolf whistle|a man wolf whistles",
            ),
        },
    ),
    "electrical hum": ClassWording(
        _w(
            "an electrical hum|an electric hum|a mains hum",
            "drones|buzzes|hums",
            "droning|buzzing|humming",
            "electrical equipment hums|an electrical device hums",
        ),
        ("hum", "buzz", "electric", "drone", "fluorescent"),
        {
            "kind=fluorescent buzz": _w(
                "a buzzing fluorescent light|a fluorescent lamp|an electrical buzz",
                "buzzes|hums and buzzes",
                "buzzing|humming",
                "fluorescent lights buzz overhead|a fluorescent tube hums",
            ),
            "kind=transformer hum": _w(
                "a transformer hum|an electrical hum|a humming transformer",
                "hums|drones",
                scenes="a power transformer hums|an electrical substation hums",
            ),
            "kind=ground loop hum": _w(
                "a mains hum|an electrical hum|a ground loop hum",
                scenes="an amplifier hums with mains noise|audio equipment hums",
            ),
        },
    ),
    "rain": ClassWording(
        _w(
            "rain|rainfall|a rain shower",
            "falls|is falling|patters|comes down",
            "falling|pattering|coming down",
            "it is raining|rain falls steadily",
        ),
        ("rain", "drizzl", "downpour"),
        {
            "intensity=drizzle": _w(
                "drizzle|a light drizzle|light rain|gentle rain|a light rain shower",
                "falls|patters|drips down|sprinkles",
                "falling|pattering|sprinkling",
                "it drizzles|a light rain is falling|it is drizzling",
            ),
            "intensity=heavy": _w(
                "heavy rain|a downpour|a rainstorm|pouring rain|torrential rain",
                "pours down|pounds down|hammers down|comes down hard",
                "pouring down|pounding down|hammering down",
                "it is pouring with rain|a heavy downpour is underway",
            ),
            "surface=roof": _w(scenes="rain drums on a roof|raindrops hit a roof|rain patters on the roof"),
            "surface=window": _w(scenes="rain taps against a window|raindrops hit a windowpane"),
            "surface=leaves": _w(scenes="rain falls on leaves|rain patters on the foliage"),
            "surface=pavement": _w(scenes="rain splashes on the pavement|rain falls on a street"),
        },
    ),
    "wind": ClassWording(
        _w(
            "wind|the wind",
            "blows|is blowing|gusts|rushes past",
            "blowing|gusting|rushing",
            "the wind blows|wind blows through the trees",
        ),
        ("wind", "breeze", "gale"),
        {
            "strength=breeze": _w(
                "a breeze|a gentle breeze|a light wind",
                "blows|rustles|drifts by",
                "blowing|rustling",
                "a breeze blows through the trees|a light wind blows",
            ),
            "strength=gusty": _w(
                "gusty wind|strong wind|a gusting wind|blustery wind",
                "blows|gusts|buffets the microphone|whooshes",
                "blowing|gusting|whooshing",
                "the wind gusts|strong wind blows in gusts",
            ),
            "strength=howling": _w(
                "howling wind|a gale|a strong gale|a storm wind",
                "howls|roars|moans|shrieks",
                "howling|roaring|moaning",
                "the wind howls|a gale howls around a building",
            ),
        },
    ),
    "ocean waves": ClassWording(
        _w(
            "ocean waves|waves|sea waves",
            "crash|roll in|break on the shore|wash ashore",
            "crashing|rolling in|breaking on the shore|washing ashore",
            "the sea washes against the shore|surf rolls onto a beach|the tide comes in on a beach",
        ),
        ("wave", "sea", "ocean", "surf", "shore", "tide", "beach"),
        {
            "sea=gentle surf": _w(
                "gentle waves|small waves|calm sea waves",
                "lap at the shore|wash in|roll onto the beach",
                "lapping at the shore|washing in",
            ),
            "sea=crashing waves": _w(
                verbs="crash|crash onto the shore|pound the beach|break and crash",
                gerunds="crashing|pounding the shore|crashing onto the beach",
            ),
            "sea=waves on pebbles": _w(
                scenes="waves wash over pebbles|waves drag pebbles on a beach|the surf rattles pebbles on the shore"
            ),
        },
    ),
    "thunder": ClassWording(
        _w(
            "thunder",
            "rumbles|booms|roars",
            "rumbling|booming",
            "thunder rumbles during a storm|a thunderstorm rumbles",
        ),
        ("thunder",),
        {
            "kind=thunderclap": _w(
                "thunder|a clap of thunder|a thunderclap|a crack of thunder",
                "cracks and rumbles|booms|crashes",
                "cracking|crashing|booming",
            ),
            "kind=rolling thunder": _w(
                "rolling thunder|thunder|a rumble of thunder", "rumbles|rolls|grumbles", "rumbling|rolling"
            ),
        },
    ),
    "fire crackling": ClassWording(
        _w(
            "a fire|a crackling fire|burning wood",
            "crackles|burns|pops and crackles|snaps and crackles",
            "crackling|burning|popping and crackling",
            "wood burns and crackles in a fire|flames crackle",
        ),
        ("fire", "flame", "crackl", "burn"),
        {
            "kind=campfire": _w("a campfire|a crackling campfire|a camp fire"),
            "kind=fireplace": _w(
                "a fireplace|a fire in the hearth|a log fire",
                scenes="logs crackle in a fireplace|a fire burns in the fireplace",
            ),
            "kind=bonfire": _w(
                "a bonfire|a large bonfire|a roaring bonfire",
                scenes="a bonfire burns and crackles|flames roar in a bonfire",
            ),
        },
    ),
    "water dripping": ClassWording(
        _w(
            "dripping water|a leaky faucet|a dripping tap",
            "drips|keeps dripping|drips steadily",
            "dripping",
            "water drips from a tap|drops of water fall",
        ),
        ("drip", "drop", "water", "faucet", "tap", "leak"),
        {
            "place=sink": _w(scenes="water drips into a sink|a leaky faucet drips into a sink|a tap drips"),
            "place=bucket": _w(scenes="water drips into a bucket|drops of water fall into a bucket"),
            "place=cave": _w(scenes="water drips in a cave|water drips from a cave ceiling"),
            "place=puddle": _w(scenes="water drips into a puddle|drops fall into a puddle"),
        },
    ),
    "footsteps": ClassWording(
        _w(
            "footsteps|steps|footfalls",
            "sound|go by|continue",
            "sounding|going by",
            "someone walks|a person is walking|someone walks by",
        ),
        ("step", "walk", "footfall", "shoe", "heel"),
        {
            "surface=gravel": _w("footsteps on gravel|crunching footsteps on gravel|steps on a gravel path"),
            "surface=snow": _w("footsteps in snow|crunchy steps in the snow|footsteps through deep snow"),
            "surface=wooden floor": _w("footsteps on a wooden floor|steps on floorboards|footsteps on wood"),
            "surface=hard floor": _w("footsteps on a hard floor|shoes on a tiled floor|footsteps on concrete"),
            "surface=high heels": _w("footsteps in heels|heeled shoes stepping|clicking heels on a floor"),
            "direction=approaching": _w(
                verbs="approach|come toward the microphone|come this way",
                gerunds="approaching|coming this way",
                scenes="someone walks toward the microphone|a person walks up",
            ),
            "direction=receding": _w(
                verbs="fade away|recede|move away",
                gerunds="walking away|fading away|receding",
                scenes="someone walks away|a person walks off",
            ),
            "direction=passing": _w(
                verbs="pass by|go by", gerunds="passing by|going by", scenes="someone walks past|a person walks by"
            ),
        },
    ),
    "knocking": ClassWording(
        _w(
            "knocking|a series of knocks",
            "is heard|sounds|repeats",
            "sounding|repeating",
            "someone knocks on a door|someone is knocking",
        ),
        ("knock", "tap", "bang", "rap"),
        {
            "target=door": _w(
                "knocking on a door|a knock at the door|door knocking|rapping on a door",
                scenes="someone knocks on the door|a visitor knocks on a wooden door|a person raps on a door",
            ),
            "target=table": _w(
                "tapping on a table|knocking on a table|tapping on a wooden tabletop",
                scenes="someone taps on a table|fingers tap on a tabletop|"
                "a person knocks on a table|someone taps fingers on a desk",
            ),
            "target=metal door": _w(
                "banging on a metal door|knocking on a metal door",
                scenes="someone bangs on a metal door|a fist bangs on a steel door",
            ),
        },
    ),
    "clock ticking": ClassWording(
        _w(
            "a clock|a ticking clock",
            "ticks|is ticking|tick-tocks",
            "ticking|tick-tocking",
            "a clock ticks away|the seconds tick by on a clock",
        ),
        ("clock", "watch", "tick"),
        {
            "kind=pocket watch": _w(
                "a pocket watch|a wristwatch|a watch", scenes="a pocket watch ticks|a watch ticks away"
            ),
            "kind=wall clock": _w("a wall clock|a clock|a kitchen clock"),
            "kind=grandfather clock": _w(
                "a grandfather clock|a pendulum clock|an old grandfather clock",
                scenes="a grandfather clock ticks in a hallway|a pendulum clock tick-tocks",
            ),
        },
    ),
    "typing on a keyboard": ClassWording(
        _w(
            "a keyboard|a computer keyboard",
            "clicks|clatters|is being typed on",
            "clicking|clattering|being typed on",
            "someone types on a keyboard|a person is typing on a computer|fingers type on a keyboard|someone is typing",
        ),
        ("typ", "keyboard", "keystroke"),
        {
            "keyboard=mechanical": _w(
                "a mechanical keyboard|a clicky keyboard|a gaming keyboard",
                scenes="someone types on a mechanical keyboard|keys clack as someone types",
            ),
            "keyboard=laptop": _w(
                "a laptop keyboard|a thin laptop keyboard",
                scenes="someone types on a laptop|a person types on a laptop keyboard",
            ),
            "keyboard=office": _w(
                "an office keyboard|a computer keyboard",
                scenes="an office worker types on a computer|someone types an email",
            ),
        },
    ),
    "heartbeat": ClassWording(
        _w(
            "a heartbeat|a human heartbeat|a heartbeat",
            "thumps|pulses|thuds|pounds",
            "thumping|pulsing|thudding",
            "a heart beats|a heart is beating|a heartbeat is heard through a stethoscope",
        ),
        ("heart",),
        {},
    ),
    "applause": ClassWording(
        _w(
            "applause|clapping|a round of applause",
            "rings out|breaks out|continues",
            "ringing out|continuing",
            "people clap|an audience applauds|a crowd claps and applauds|people clap their hands",
        ),
        ("applau", "clap"),
        {
            "crowd=small group": _w(
                "scattered applause|clapping from a few people|applause",
                scenes="a few people clap|a small group of people clap|a handful of people applaud",
            ),
            "crowd=audience": _w(scenes="an audience applauds|an audience claps|spectators clap"),
            "crowd=large crowd": _w(
                "a big round of applause|enthusiastic applause|applause from a large crowd",
                scenes="a large crowd applauds|a huge audience claps and applauds|thousands of people clap",
            ),
        },
    ),
    "engine idling": ClassWording(
        _w(
            "an engine|an idling engine|a motor",
            "idles|runs|rumbles|is idling",
            "idling|running|rumbling",
            "a vehicle sits idling|an engine runs at idle",
        ),
        ("engine", "idl", "motor"),
        {
            "vehicle=car": _w(
                "a car engine|an idling car|a car's engine",
                scenes="a parked car idles|a car sits with its engine running",
            ),
            "vehicle=truck": _w(
                "a diesel engine|a truck engine|an idling truck",
                scenes="a diesel truck idles|a lorry idles with its engine running",
            ),
            "vehicle=motorcycle": _w(
                "a motorcycle engine|an idling motorcycle|a motorbike engine",
                "idles|putters|rumbles",
                scenes="a motorcycle idles|a motorbike sits idling",
            ),
        },
    ),
    "helicopter": ClassWording(
        _w(
            "a helicopter|a chopper",
            "flies|whirs|thumps",
            "flying|whirring|thumping",
            "helicopter blades chop the air|a helicopter's rotor blades thump",
        ),
        ("helicopter", "chopper", "rotor"),
        {
            "motion=hovering": _w(
                verbs="hovers|hovers overhead|hangs in the air", gerunds="hovering|hovering overhead"
            ),
            "motion=flying over": _w(
                verbs="flies overhead|flies over|passes overhead|flies past", gerunds="flying overhead|passing overhead"
            ),
            "motion=approaching": _w(
                verbs="approaches|comes in to land|flies toward the microphone", gerunds="approaching|coming in to land"
            ),
        },
    ),
    "jackhammer": ClassWording(
        _w(
            "a jackhammer|a pneumatic drill",
            "pounds|rattles|hammers|breaks concrete",
            "pounding|rattling|hammering|breaking up concrete",
            "a construction worker uses a jackhammer|a worker breaks up pavement with a jackhammer",
        ),
        ("jackhammer", "drill", "hammer", "breaker"),
        {
            "tool=breaker": _w("a concrete breaker|a pavement breaker|a jackhammer"),
            "tool=pneumatic drill": _w("a pneumatic drill|an air hammer|a jackhammer"),
        },
    ),
    "birds chirping": ClassWording(
        _w(
            "birds|songbirds|several birds|small birds",
            "chirp|sing|tweet|twitter|are chirping",
            "chirping|singing|tweeting|twittering",
            "birds sing in the trees|birdsong fills the air|birds chirp and tweet",
        ),
        ("bird", "chirp", "tweet"),
        {},
    ),
    "crickets": ClassWording(
        _w(
            "crickets|many crickets|field crickets",
            "chirp|are chirping|chirrup",
            "chirping|chirruping",
            "crickets chirp at night|insects chirp in the grass",
        ),
        ("cricket", "insect"),
        {
            "chorus=no": _w(
                "a cricket|a lone cricket|a single cricket",
                "chirps|is chirping|chirrups",
                "chirping|chirruping",
                "a cricket chirps at night|a single cricket chirps in the grass",
            ),
        },
    ),
    "glass breaking": ClassWording(
        _w(
            "glass|a pane of glass",
            "breaks|shatters|smashes",
            "breaking|shattering|smashing",
            "glass shatters|something made of glass breaks into pieces",
        ),
        ("glass", "shatter", "window", "bottle"),
        {
            "kind=window": _w(
                "a window|a glass window|a windowpane",
                scenes="someone smashes a window|a window shatters|a glass window is broken",
            ),
            "kind=bottle": _w(
                "a bottle|a glass bottle|a beer bottle",
                scenes="a glass bottle smashes on the ground|someone drops a bottle and it shatters",
            ),
            "kind=drinking glass": _w(
                "a glass|a drinking glass|a wine glass",
                scenes="a drinking glass falls and shatters|someone drops a glass and it breaks",
            ),
        },
    ),
    "explosion": ClassWording(
        _w("an explosion|a blast", "booms|goes off|erupts", "booming|going off", "something explodes|a bomb goes off"),
        ("explo", "blast", "bomb", "boom", "detonat"),
        {
            "kind=blast": _w("an explosion|a blast|a powerful blast|a detonation"),
            "kind=boom": _w("a boom|an explosion|a dull boom", "booms|rumbles|goes off", "booming|rumbling"),
            "kind=demolition": _w(
                "a demolition blast|an explosion|a controlled explosion",
                scenes="a building is demolished with explosives|an explosion is followed by falling debris",
            ),
        },
    ),
}

# Adjectives go inside a noun phrase ("a distant siren"); adverbials after a verb ("wails in the distance").
ADJECTIVES: dict[str, tuple[str, ...]] = {
    "distant": ("distant", "faraway", "far-off"),
    "loud": ("loud", "very loud"),
    "quiet": ("quiet", "faint", "soft"),
    "high": ("high-pitched", "shrill"),
    "low": ("low-pitched", "deep"),
}
ADVERBIALS: dict[str, tuple[str, ...]] = {
    "near": ("nearby", "close by", "up close", "close to the microphone"),
    "distant": ("in the distance", "far away", "from far away", "somewhere in the distance"),
    "loud": ("loudly", "very loudly"),
    "quiet": ("quietly", "faintly", "softly"),
    "fast": ("rapidly", "quickly", "at a fast pace", "in quick succession"),
    "slow": ("slowly", "at a slow pace", "very slowly", "at a leisurely pace"),
    "high": ("at a high pitch", "in a high register"),
    "low": ("at a low pitch", "in a low register"),
    "indoors": ("indoors", "inside a room", "in a room", "inside a building"),
    "outdoors": ("outdoors", "outside", "in the open air", "in the open"),
}
# Adjective order in English: opinion/loudness, then distance, then pitch, then the noun.
_ADJECTIVE_ORDER = ("loudness", "distance", "pitch")


def modifier_phrases(value: str) -> tuple[str, ...]:
    """Every phrase that may name a modifier value in a caption (for checking captions)."""
    return ADJECTIVES.get(value, ()) + ADVERBIALS[value]


def wording(class_name: str, params: Params) -> Wording:
    spec = WORDING[class_name]
    result = spec.base
    for key, value in params.items():
        override = spec.variants.get(f"{key}={value}")
        if override is not None:
            result = replace(
                result, **{f.name: getattr(override, f.name) for f in fields(override) if getattr(override, f.name)}
            )
    return result


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _with_adjective(noun: str, adjective: str) -> str:
    for article in ("a ", "an ", "the "):
        if noun.startswith(article):
            rest = noun[len(article) :]
            if article == "the ":
                return f"the {adjective} {rest}"
            return f"{'an' if adjective[0] in 'aeiou' else 'a'} {adjective} {rest}"
    return f"{adjective} {noun}"


@dataclass(frozen=True)
class _Phrase:
    """One source worded for one caption: subject, predicate, gerund, clause and trailing adverbials."""

    subject: str
    verb: str
    verb2: str
    gerund: str
    scene: str
    adverbials: tuple[str, ...]  # the modifiers not already worded as adjectives of `subject`
    scene_adverbials: tuple[str, ...]  # every modifier: `scene` has its own subject, without adjectives

    def tail(self) -> str:
        return _adverbial_tail(self.adverbials)

    def scene_tail(self) -> str:
        return _adverbial_tail(self.scene_adverbials)


def _phrase(
    rng: np.random.Generator, class_name: str, params: Params, modifiers: Mapping[str, str], *, noun_only: bool = False
) -> _Phrase:
    words = wording(class_name, params)
    noun = _pick(rng, words.nouns)
    subject = noun
    adverbials: list[str] = []
    everything: list[str] = []
    for kind in ("speed", "distance", "pitch", "loudness", "setting"):
        value = modifiers.get(kind)
        if value is None:
            continue
        adverbial = _pick(rng, ADVERBIALS[value])
        everything.append(adverbial)
        # Noun-only captions ("A distant siren") cannot carry a manner adverb like "loudly".
        if (
            kind in _ADJECTIVE_ORDER
            and value in ADJECTIVES
            and ((noun_only and kind != "distance") or rng.uniform() < 0.4)
        ):
            continue
        adverbials.append(adverbial)
    for kind in reversed(_ADJECTIVE_ORDER):
        value = modifiers.get(kind)
        if value is not None and value in ADJECTIVES and not any(a in ADVERBIALS[value] for a in adverbials):
            subject = _with_adjective(subject, _pick(rng, ADJECTIVES[value]))
    verbs = list(words.verbs)
    rng.shuffle(verbs)
    scene = _pick(rng, words.scenes) if words.scenes else f"{noun} {verbs[0]}"
    return _Phrase(subject, verbs[0], verbs[-1], _pick(rng, words.gerunds), scene, tuple(adverbials), tuple(everything))


_SINGLE_TEMPLATES: tuple[str, ...] = (
    "{subject} {verb}{tail}",
    "{subject} {gerund}{tail}",
    "the sound of {subject} {gerund}{tail}",
    "{scene}{scene_tail}",
    "{subject} can be heard {gerund}{tail}",
    "we hear {subject} {gerund}{tail}",
    "{subject} {verb} and {verb2}{tail}",
    "a recording of {subject} {gerund}{tail}",
    "{front}, {subject} {verb}",
    "{noun_only}",
)
_MIXTURE_TEMPLATES: tuple[str, ...] = (
    "{fg_clause}{tail} while {bg_clause}",
    "{fg_clause}{tail} with {bg_noun} in the background",
    "{bg_clause} in the background as {fg_clause}{tail}",
    "over the sound of {bg_noun}, {fg_clause}{tail}",
    "{fg_subject} {fg_gerund}{tail} over {bg_noun} in the background",
    "in the foreground {fg_clause}{tail}, while {bg_clause} in the background",
    "{fg_scene}{scene_tail}; {bg_noun} can be heard in the background",
    "{fg_scene}{scene_tail} against a background of {bg_noun}",
    "{bg_noun} in the background and {fg_subject} {fg_gerund}{tail} in the foreground",
)


def _adverbial_tail(adverbials: Sequence[str]) -> str:
    # "slowly and softly in the distance" reads better than "slowly softly in the distance".
    manner = [a for a in adverbials if a.endswith("ly") and " " not in a.removeprefix("very ")]
    rest = [a for a in adverbials if a not in manner]
    parts = [" and ".join(manner)] if manner else []
    return "".join(f" {p}" for p in parts + rest)


def _join(parts: Sequence[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _finish(text: str, rng: np.random.Generator) -> str:
    text = " ".join(text.split())
    text = text[0].upper() + text[1:]
    # AudioCaps captions mostly end without a full stop, Clotho captions with one.
    return text + "." if rng.uniform() < 0.5 else text


def write_captions(
    rng: np.random.Generator,
    foreground: tuple[str, Params],
    modifiers: Mapping[str, str],
    backgrounds: Sequence[tuple[str, Params]] = (),
    count: int = 5,
) -> tuple[str, ...]:
    """`count` distinct captions, each from a different template, each naming every source and modifier."""
    templates = list(_MIXTURE_TEMPLATES if backgrounds else _SINGLE_TEMPLATES)
    if not backgrounds and not modifiers:
        templates.remove("{front}, {subject} {verb}")
    if "speed" in modifiers and "{noun_only}" in templates:
        templates.remove("{noun_only}")
    order = rng.permutation(len(templates))
    captions: list[str] = []
    attempt = 0
    while len(captions) < count:
        template = templates[order[attempt % len(order)]]
        attempt += 1
        caption = _fill(rng, template, foreground, modifiers, backgrounds)
        if caption.rstrip(".").lower() not in {c.rstrip(".").lower() for c in captions}:
            captions.append(caption)
        if attempt > 50 * count:
            raise RuntimeError(f"could not write {count} distinct captions for {foreground[0]}")
    return tuple(captions)


def _fill(
    rng: np.random.Generator,
    template: str,
    foreground: tuple[str, Params],
    modifiers: Mapping[str, str],
    backgrounds: Sequence[tuple[str, Params]],
) -> str:
    noun_only = template == "{noun_only}"
    fg = _phrase(rng, foreground[0], foreground[1], modifiers, noun_only=noun_only)
    if noun_only:
        return _finish(fg.subject + fg.tail(), rng)
    if template.startswith("{front}"):
        front, *rest = fg.adverbials or ("",)
        if not front:
            return _finish(f"{fg.subject} {fg.verb}", rng)
        tail = _adverbial_tail(rest)
        return _finish(f"{front[0].upper()}{front[1:]}, {fg.subject} {fg.verb}{tail}", rng)
    bg = [_phrase(rng, name, params, {}) for name, params in backgrounds]
    text = template.format(
        subject=fg.subject,
        verb=fg.verb,
        verb2=fg.verb2,
        gerund=fg.gerund,
        scene=fg.scene,
        tail=fg.tail(),
        scene_tail=fg.scene_tail(),
        front="",
        noun_only="",
        fg_clause=f"{fg.subject} {fg.verb}",
        fg_subject=fg.subject,
        fg_gerund=fg.gerund,
        fg_scene=fg.scene,
        bg_clause=_join([f"{b.subject} {b.verb}" for b in bg]) if bg else "",
        bg_noun=_join([b.subject for b in bg]) if bg else "",
    )
    return _finish(text, rng)
